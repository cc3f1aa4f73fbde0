from kerasrl.agents.td3.td3 import TD3

__all__ = ["TD3"]
