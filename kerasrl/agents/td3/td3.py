"""Twin Delayed DDPG (TD3): a deterministic actor with clipped double-Q critics."""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf
from keras import ops

from kerasrl import noise as action_noise
from kerasrl.agents.base import TD_ERRORS_KEY, Agent, copy_weights
from kerasrl.networks import mlp


@keras.saving.register_keras_serializable(package="kerasrl")
class TD3(Agent):
    """TD3 (Fujimoto et al. 2018) for Box actions.

    * A deterministic actor `mu(s)` with a tanh output, scaled to the Box bounds.
    * Clipped double Q: two critics, each regressing on
      `y = r + gamma * (1 - d) * min_i Q_targ_i(s', a')`.
    * Target policy smoothing: `a' = clip(mu_targ(s') + clip(eps, -c, c), -1, 1)`,
      `eps ~ N(0, target_noise^2)`, `c = target_noise_clip`.
    * Delayed updates: the actor, and all targets, move once every
      `policy_delay` gradient steps; a target-update callback's `every`
      counts within those steps (`SoftTargetUpdate(tau)` blends on every
      actor update).
    * Exploration: `EnvDataset(action_noise=...)` adds `kerasrl.noise` to
      the actor's action (Gaussian(0.1) by default); `act(obs)` alone adds
      none.

    Args:
        observation_space: a gymnasium Box or Discrete space.
        action_space: a gymnasium Box space.
        hidden: hidden layer sizes of the actor and the critics.
        activation: hidden activation.
        gamma: discount factor.
        tau: target blend factor of the default target update.
        target_update_interval: actor updates between target updates.
        policy_delay: gradient steps per actor (and target) update.
        target_noise: standard deviation of the target smoothing noise, in
            [-1, 1] action units (0 turns smoothing off).
        target_noise_clip: the smoothing noise is clipped to +-this.
        max_grad_norm: clip each network's gradient to this global norm.
        seed: seeds network initialisation and the smoothing noise.

    Example:

    ```python
    env = gym.make("Pendulum-v1")
    agent = kerasrl.TD3.from_env(env, hidden=(400, 300))
    agent.compile(optimizer=keras.optimizers.Adam(1e-3))
    data = kerasrl.EnvDataset(env, agent, learning_starts=10_000,
                              action_noise=kerasrl.noise.Gaussian(0.1))
    agent.fit(data, epochs=10, steps_per_epoch=1000)
    ```
    """

    metric_names = ("loss", "critic_loss", "actor_loss", "q_mean", "q_std", "q_diff")
    n_critics = 2

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        hidden: Sequence[int] = (400, 300),
        activation: str = "relu",
        gamma: float = 0.99,
        tau: float = 0.005,
        target_update_interval: int = 1,
        policy_delay: int = 2,
        target_noise: float = 0.2,
        target_noise_clip: float = 0.5,
        max_grad_norm: float | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(observation_space, action_space, gamma=gamma, tau=tau,
                         target_update_interval=target_update_interval, seed=seed, **kwargs)
        name = type(self).__name__
        if not isinstance(self.action_space, gym.spaces.Box):
            raise ValueError(f"{name} needs a Box action space, got {self.action_space!r}; "
                             "use DQN or SAC for discrete actions.")
        if int(policy_delay) < 1:
            raise ValueError(f"{name} policy_delay must be >= 1, got {policy_delay}.")
        if target_noise < 0 or target_noise_clip < 0:
            raise ValueError(f"{name} target_noise and target_noise_clip must be >= 0, got "
                             f"{target_noise} and {target_noise_clip}.")
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = activation
        self.policy_delay = int(policy_delay)
        self.target_noise = float(target_noise)
        self.target_noise_clip = float(target_noise_clip)
        self.max_grad_norm = max_grad_norm
        self.act_dim = int(np.prod(self.action_space.shape))

        net_seed = lambda k: None if seed is None else seed * 100 + 10 * k
        self.actor = self.make_actor("actor", net_seed(1))
        self.actor_target = self.make_actor("actor_target", None)
        self.critics = [self.make_critic(f"critic{i + 1}", net_seed(2 + i)) for i in range(self.n_critics)]
        self.critic_targets = [self.make_critic(f"critic{i + 1}_target", None) for i in range(self.n_critics)]
        self._targets = [(self.actor, self.actor_target)] + list(zip(self.critics, self.critic_targets))
        for online, target in self._targets:
            target.trainable = False
            copy_weights(online, target)
        # The actor loss of the last actor update, logged on the steps in between.
        self.last_actor_loss = keras.Variable(0.0, dtype="float32", trainable=False, name="last_actor_loss")
        self.built = True

    # ------------------------------------------------------------- structure
    def make_actor(self, name: str, seed: int | None) -> keras.Model:
        """`mu(s)`: the observation to a tanh action in [-1, 1]."""
        return mlp(self.obs_dim, self.hidden, self.act_dim, self.activation, name=name,
                   output_activation="tanh", seed=seed, dtype=self.dtype_policy)

    def make_critic(self, name: str, seed: int | None) -> keras.Model:
        """`Q(s, a)` over the concatenated observation and [-1, 1] action."""
        return mlp(self.obs_dim + self.act_dim, self.hidden, 1, self.activation, name=name, seed=seed,
                   dtype=self.dtype_policy)

    def target_pairs(self) -> list[tuple[keras.Model, keras.Model]]:
        return self._targets

    def optimizer_roles(self) -> dict[str, list]:
        return {
            "critic": [v for critic in self.critics for v in critic.trainable_variables],
            "actor": self.actor.trainable_variables,
        }

    def policy_networks(self) -> dict[str, keras.Model]:
        return {"actor": self.actor}

    def default_action_noise(self) -> action_noise.ActionNoise:
        return action_noise.Gaussian(0.1)

    def actor_update_due(self) -> Any:
        """True on the gradient steps that update the actor (every policy_delay-th, counting from 1)."""
        return ops.equal((self.num_gradient_steps + 1) % self.policy_delay, 0)

    def target_update_due(self) -> Any:
        # Called after the step counter moved on: targets follow only actor updates.
        on_actor_step = ops.equal(self.num_gradient_steps % self.policy_delay, 0)
        every = ops.equal((self.num_gradient_steps // self.policy_delay) % self.target_every, 0)
        return ops.logical_and(on_actor_step, every)

    # ---------------------------------------------------------------- policy
    def _policy(self, obs: np.ndarray, deterministic: bool, rng: np.random.Generator, nets: dict) -> np.ndarray:
        return self.scale_action(nets["actor"](obs)).reshape((len(obs),) + self.action_space.shape)

    def _deterministic_action(self, x: Any) -> Any:
        return self._box_action(self.actor(x))

    def q_value(self, critic: keras.Model, obs: Any, unit_action: Any) -> Any:
        return ops.squeeze(critic(ops.concatenate([obs, unit_action], axis=-1)), -1)

    def state_input(self, batch: dict[str, Any], next_step: bool = False) -> Any:
        """What the actor and critics see of s (or of s' with `next_step`): the preprocessed observation."""
        return self.preprocess(batch["next_observation" if next_step else "observation"])

    # ---------------------------------------------------------------- update
    def target_action(self, s_next: Any) -> Any:
        """Target policy smoothing: `a' = clip(mu_targ(s') + clip(eps, -c, c), -1, 1)`, eps ~ N(0, sigma^2)."""
        a_next = self.actor_target(s_next)
        if self.target_noise == 0:
            return a_next
        eps = self.target_noise * tf.random.stateless_normal(ops.shape(a_next), seed=self.noise_seed(0))
        return ops.clip(a_next + ops.clip(eps, -self.target_noise_clip, self.target_noise_clip), -1.0, 1.0)

    def td_target(self, batch: dict[str, Any]) -> Any:
        """Clipped double Q: `y = r + gamma * (1 - d) * min_i Q_targ_i(s', a')` (gamma^m with n-step returns)."""
        s_next = self.state_input(batch, next_step=True)
        a_next = self.target_action(s_next)
        q_next = self.q_value(self.critic_targets[0], s_next, a_next)
        for critic_target in self.critic_targets[1:]:
            q_next = ops.minimum(q_next, self.q_value(critic_target, s_next, a_next))
        discount = batch.get("discount", self.gamma)
        return batch["reward"] + discount * (1.0 - batch["terminated"]) * q_next

    def update(self, batch: dict[str, Any]) -> dict[str, Any]:
        s = self.state_input(batch)
        a = self.unscale_action(ops.reshape(batch["action"], (-1, self.act_dim)))
        weight = batch.get("weight", 1.0)  # importance sampling, with prioritized replay
        y = ops.stop_gradient(self.td_target(batch))

        # Critics: minimise sum_i E[w * (Q_i(s, a) - y)^2]
        with tf.GradientTape() as tape:
            qs = [self.q_value(critic, s, a) for critic in self.critics]
            critic_loss = sum(ops.mean(weight * ops.square(q - y)) for q in qs)
        self.apply_gradients("critic", tape, critic_loss, self.optimizer_roles()["critic"])

        # Actor, every policy_delay steps: maximise Q_1(s, mu(s))
        def actor_step() -> Any:
            with tf.GradientTape() as tape:
                actor_loss = -ops.mean(self.q_value(self.critics[0], s, self.actor(s)))
            self.apply_gradients("actor", tape, actor_loss, self.actor.trainable_variables)
            self.last_actor_loss.assign(actor_loss)
            return actor_loss

        if self.policy_delay == 1:
            actor_loss = actor_step()
        else:
            actor_loss = tf.cond(self.actor_update_due(), actor_step, lambda: ops.convert_to_tensor(self.last_actor_loss))

        td_errors = ops.abs(qs[0] - y)
        for q in qs[1:]:
            td_errors = ops.minimum(td_errors, ops.abs(q - y))
        logs = {
            TD_ERRORS_KEY: td_errors,
            "loss": critic_loss + actor_loss,
            "critic_loss": critic_loss,
            "actor_loss": actor_loss,
            "q_mean": ops.mean(qs[0]),
            "q_std": ops.std(qs[0]),
        }
        if len(qs) > 1:
            logs["q_diff"] = ops.mean(ops.abs(qs[0] - qs[1]))
        return logs

    # ---------------------------------------------------------------- config
    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            hidden=list(self.hidden),
            activation=self.activation,
            policy_delay=self.policy_delay,
            target_noise=self.target_noise,
            target_noise_clip=self.target_noise_clip,
            max_grad_norm=self.max_grad_norm,
        )
        return config
