"""Keras callbacks for RL bookkeeping: target updates, checkpoints, evaluation.

Imported as `kerasrl.callbacks`.
"""

from kerasrl.callbacks.checkpoint import Checkpoint, DamagedCheckpointError, latest_checkpoint, resume
from kerasrl.callbacks.evaluation import EvalCallback
from kerasrl.callbacks.priority import PriorityRefresh
from kerasrl.callbacks.target_update import HardTargetUpdate, SoftTargetUpdate, TargetUpdate
from kerasrl.callbacks.tensorboard import TensorBoard

__all__ = ["Checkpoint", "DamagedCheckpointError", "EvalCallback", "HardTargetUpdate", "PriorityRefresh",
           "SoftTargetUpdate", "TargetUpdate", "TensorBoard", "latest_checkpoint", "resume"]
