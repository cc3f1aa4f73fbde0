from kerasrl.agents.dqn.dqn import DQN

__all__ = ["DQN"]
