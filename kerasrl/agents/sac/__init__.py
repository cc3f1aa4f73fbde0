from kerasrl.agents.sac.sac import SAC

__all__ = ["SAC"]
