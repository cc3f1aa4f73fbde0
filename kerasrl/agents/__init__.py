"""kerasrl agents: each one a keras.Model trained by fit."""

from kerasrl.agents.a2c import A2C
from kerasrl.agents.actor_critic import ActorCritic
from kerasrl.agents.base import Agent
from kerasrl.agents.ddpg import DDPG
from kerasrl.agents.dqn import DQN
from kerasrl.agents.lstm_td3 import LSTMTD3
from kerasrl.agents.ppo import PPO
from kerasrl.agents.sac import SAC
from kerasrl.agents.td3 import TD3

__all__ = ["A2C", "ActorCritic", "Agent", "DDPG", "DQN", "LSTMTD3", "PPO", "SAC", "TD3"]
