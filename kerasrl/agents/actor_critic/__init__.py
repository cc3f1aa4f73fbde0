from kerasrl.agents.actor_critic.actor_critic import ActorCritic

__all__ = ["ActorCritic"]
