"""Hyperparameter search over kerasrl agents with keras-tuner (imported as `kerasrl.tuning`).

`RLTuner` is a keras-tuner Tuner whose trials train and evaluate agents; the
hypermodels (`SACHyperModel`, `DQNHyperModel`, `TD3HyperModel`,
`DDPGHyperModel`, `LSTMTD3HyperModel`, `PPOHyperModel`, `A2CHyperModel`,
`ActorCriticHyperModel`) hold each agent's search space. See `RLTuner` for
the user story.
"""

from kerasrl.tuning.hypermodels import (A2CHyperModel, ActorCriticHyperModel, AgentHyperModel, DDPGHyperModel,
                                        DQNHyperModel, LSTMTD3HyperModel, OnPolicyHyperModel, PPOHyperModel,
                                        SACHyperModel, TD3HyperModel)
from kerasrl.tuning.tuner import OBJECTIVE, RLTuner

# Algorithm name -> hypermodel class (the CLI's `kerasrl tune ALGO`).
HYPERMODELS = {"sac": SACHyperModel, "dqn": DQNHyperModel, "td3": TD3HyperModel, "ddpg": DDPGHyperModel,
               "lstm_td3": LSTMTD3HyperModel, "ppo": PPOHyperModel, "a2c": A2CHyperModel,
               "ac": ActorCriticHyperModel}

__all__ = ["OBJECTIVE", "A2CHyperModel", "ActorCriticHyperModel", "AgentHyperModel", "DDPGHyperModel",
           "DQNHyperModel", "HYPERMODELS", "LSTMTD3HyperModel", "OnPolicyHyperModel", "PPOHyperModel", "RLTuner",
           "SACHyperModel", "TD3HyperModel"]
