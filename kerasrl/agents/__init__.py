"""kerasrl agents: each one a keras.Model trained by fit."""

from kerasrl.agents.base import Agent
from kerasrl.agents.dqn import DQN
from kerasrl.agents.sac import SAC

__all__ = ["Agent", "DQN", "SAC"]
