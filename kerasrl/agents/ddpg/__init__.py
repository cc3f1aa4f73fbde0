from kerasrl.agents.ddpg.ddpg import DDPG

__all__ = ["DDPG"]
