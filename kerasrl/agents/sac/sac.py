"""Soft Actor-Critic for continuous (Box) and discrete actions."""

from __future__ import annotations

import math
from typing import Any, Sequence

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf
from keras import ops

from kerasrl import schedules
from kerasrl.agents.base import TD_ERRORS_KEY, Agent, copy_weights, gaussian_log_prob_tanh
from kerasrl.networks import mlp

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


# Discrete SAC's default target entropy, as a fraction of the uniform policy's log|A|
# (benchmarks/discrete_sac_entropy.py measured 0.98, 0.6 and 0.3).
DISCRETE_ENTROPY_FRACTION = 0.6


@keras.saving.register_keras_serializable(package="kerasrl")
class SAC(Agent):
    """Soft Actor-Critic (Haarnoja et al. 2018), continuous and discrete.

    Box actions: a tanh-squashed Gaussian policy scaled to the bounds, twin
    critics Q(s, a) with target copies, entropy temperature alpha tuned towards
    `target_entropy` (-dim(A) by default).

    Discrete actions: a categorical policy and critics Q(s, .) over all
    actions, with the expectations over actions taken exactly (Christodoulou
    2019); target entropy 0.6 * log|A| by default. Christodoulou's 0.98 *
    log|A| (`target_entropy=0.98 * math.log(n)`) keeps the policy close to
    uniform: on Acrobot-v1 it stayed at the random policy's return in 30k
    steps where 0.6 learned, and on CartPole-v1 alpha diverged (the
    README's SAC section has the figures).

    `use_value_network=True` selects the original paper's variant: a state-value
    network V with a target copy; critics regress on r + gamma * V_target(s')
    and V on min Q(s, a~pi) - alpha * log pi(a|s).

    Args:
        observation_space: a gymnasium Box or Discrete space.
        action_space: a gymnasium Box or Discrete space.
        hidden: hidden layer sizes of every network.
        activation: hidden activation.
        gamma: discount factor.
        tau: target blend factor used by the default target update.
        target_update_interval: gradient steps between target updates.
        alpha: `"auto"` to tune the temperature, or a fixed float.
        initial_alpha: starting temperature when tuned.
        target_entropy: `"auto"` (-dim(A) for Box actions,
            `DISCRETE_ENTROPY_FRACTION * log|A|` for Discrete) or a float.
        reward_scale: a number or a schedule of the gradient step.
        max_grad_norm: clip each network's gradient to this global norm.
        use_value_network: the soft state-value network variant.
        seed: seeds network initialisation and policy sampling.

    Example:

    ```python
    env = gym.make("Pendulum-v1")
    agent = kerasrl.SAC.from_env(env)
    agent.compile(optimizer=keras.optimizers.Adam(1e-3))
    agent.fit(kerasrl.EnvDataset(env, agent, learning_starts=1000), epochs=20, steps_per_epoch=1000)
    ```
    """

    metric_names = ("loss", "critic_loss", "actor_loss", "alpha_loss", "alpha", "entropy",
                    "q_mean", "q_std", "q_diff")

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
        gamma: float = 0.99,
        tau: float = 0.005,
        target_update_interval: int = 1,
        alpha: float | str = "auto",
        initial_alpha: float = 1.0,
        target_entropy: float | str = "auto",
        reward_scale: float | schedules.Schedule = 1.0,
        max_grad_norm: float | None = None,
        use_value_network: bool = False,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(observation_space, action_space, gamma=gamma, tau=tau,
                         target_update_interval=target_update_interval, seed=seed, **kwargs)
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = activation
        self.max_grad_norm = max_grad_norm
        self.use_value_network = bool(use_value_network)
        self.reward_scale = schedules.get(reward_scale)
        self.auto_alpha = alpha == "auto"
        self.alpha_setting = alpha
        self.initial_alpha = float(initial_alpha)
        if self.discrete:
            self.act_dim = int(self.action_space.n)
            default_entropy = DISCRETE_ENTROPY_FRACTION * math.log(self.act_dim)
        else:
            self.act_dim = int(np.prod(self.action_space.shape))
            default_entropy = -float(self.act_dim)
        self.target_entropy = default_entropy if target_entropy == "auto" else float(target_entropy)
        self.target_entropy_setting = target_entropy

        # Discrete critics score every action at once: Q(s, .).
        critic_in = self.obs_dim if self.discrete else self.obs_dim + self.act_dim
        critic_out = self.act_dim if self.discrete else 1
        actor_out = self.act_dim if self.discrete else 2 * self.act_dim
        net_seed = lambda k: None if seed is None else seed * 100 + 10 * k
        net = lambda n_in, n_out, name, k=None: mlp(n_in, self.hidden, n_out, activation, name=name,
                                                    seed=None if k is None else net_seed(k), dtype=self.dtype_policy)
        self.actor = net(self.obs_dim, actor_out, "actor", 1)
        self.critic1 = net(critic_in, critic_out, "critic1", 2)
        self.critic2 = net(critic_in, critic_out, "critic2", 3)
        if self.use_value_network:
            self.value = net(self.obs_dim, 1, "value", 4)
            self.value_target = net(self.obs_dim, 1, "value_target")
            self._targets = [(self.value, self.value_target)]
        else:
            self.critic1_target = net(critic_in, critic_out, "critic1_target")
            self.critic2_target = net(critic_in, critic_out, "critic2_target")
            self._targets = [(self.critic1, self.critic1_target), (self.critic2, self.critic2_target)]
        for online, target in self._targets:
            target.trainable = False
            copy_weights(online, target)
        initial = self.initial_alpha if self.auto_alpha else float(alpha)
        self.log_alpha = keras.Variable(math.log(initial), dtype="float32", trainable=self.auto_alpha, name="log_alpha")
        self.built = True

    # ------------------------------------------------------------- structure
    def target_pairs(self) -> list[tuple[keras.Model, keras.Model]]:
        return self._targets

    def optimizer_roles(self) -> dict[str, list]:
        roles = {
            "critic": self.critic1.trainable_variables + self.critic2.trainable_variables,
            "actor": self.actor.trainable_variables,
        }
        if self.use_value_network:
            roles["value"] = self.value.trainable_variables
        if self.auto_alpha:
            roles["alpha"] = [self.log_alpha]
        return roles

    def policy_networks(self) -> dict[str, keras.Model]:
        return {"actor": self.actor}

    # ---------------------------------------------------------------- policy
    def _policy(self, obs: np.ndarray, deterministic: bool, rng: np.random.Generator, nets: dict) -> np.ndarray:
        out = nets["actor"](obs)
        if self.discrete:
            if deterministic:
                return out.argmax(axis=-1) + self.action_space.start
            gumbel = -np.log(-np.log(rng.uniform(1e-12, 1.0, size=out.shape)))
            return (out + gumbel).argmax(axis=-1) + self.action_space.start
        mean, log_std = np.split(out, 2, axis=-1)
        if deterministic:
            u = mean
        else:
            std = np.exp(np.clip(log_std, LOG_STD_MIN, LOG_STD_MAX))
            u = mean + std * rng.standard_normal(mean.shape, dtype=np.float32)
        return self.scale_action(np.tanh(u)).reshape((len(obs),) + self.action_space.shape)

    def _deterministic_action(self, x: Any) -> Any:
        out = self.actor(x)
        if self.discrete:
            return self._greedy_action(out)
        return self._box_action(ops.tanh(out[:, : self.act_dim]))

    def sample_action(self, obs: Any, salt: int) -> tuple[Any, Any]:
        """Continuous: a reparameterised sample in [-1, 1] and its log-probability."""
        mean, log_std = ops.split(self.actor(obs), 2, axis=-1)
        log_std = ops.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)
        u = mean + ops.exp(log_std) * tf.random.stateless_normal(ops.shape(mean), seed=self.noise_seed(salt))
        return ops.tanh(u), gaussian_log_prob_tanh(u, mean, log_std)

    def q_values(self, obs: Any, unit_action: Any, target: bool = False) -> tuple[Any, Any]:
        q1, q2 = (self.critic1_target, self.critic2_target) if target else (self.critic1, self.critic2)
        x = ops.concatenate([obs, unit_action], axis=-1)
        return ops.squeeze(q1(x), -1), ops.squeeze(q2(x), -1)

    # ---------------------------------------------------------------- update
    def update(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.discrete:
            return self._update_discrete(batch)
        return self._update_continuous(batch)

    def _update_continuous(self, batch: dict[str, Any]) -> dict[str, Any]:
        s = self.preprocess(batch["observation"])
        s_next = self.preprocess(batch["next_observation"])
        a = self.unscale_action(ops.reshape(batch["action"], (-1, self.act_dim)))
        r = batch["reward"] * self.reward_scale(self.num_gradient_steps)
        not_done = 1.0 - batch["terminated"]
        discount = batch.get("discount", self.gamma)  # gamma^m with n-step returns
        weight = batch.get("weight", 1.0)  # importance sampling, with prioritized replay
        alpha = ops.exp(self.log_alpha)

        # Critic: y = r + gamma * (1 - d) * (min_i Q_targ_i(s', a') - alpha * log pi(a'|s'))
        if self.use_value_network:
            v_next = ops.squeeze(self.value_target(s_next), -1)
        else:
            a_next, log_pi_next = self.sample_action(s_next, salt=0)
            q1_next, q2_next = self.q_values(s_next, a_next, target=True)
            v_next = ops.minimum(q1_next, q2_next) - alpha * log_pi_next
        y = ops.stop_gradient(r + discount * not_done * v_next)
        with tf.GradientTape() as tape:
            q1, q2 = self.q_values(s, a)
            critic_loss = 0.5 * ops.mean(weight * (ops.square(q1 - y) + ops.square(q2 - y)))
        self.apply_gradients("critic", tape, critic_loss, self.optimizer_roles()["critic"])

        # Actor: minimise E[alpha * log pi(a|s) - min_i Q_i(s, a)], a ~ pi reparameterised.
        with tf.GradientTape() as tape:
            a_pi, log_pi = self.sample_action(s, salt=1)
            q1_pi, q2_pi = self.q_values(s, a_pi)
            min_q_pi = ops.minimum(q1_pi, q2_pi)
            actor_loss = ops.mean(alpha * log_pi - min_q_pi)
        self.apply_gradients("actor", tape, actor_loss, self.actor.trainable_variables)

        value_loss = 0.0
        if self.use_value_network:
            v_target = ops.stop_gradient(min_q_pi - alpha * log_pi)
            with tf.GradientTape() as tape:
                value_loss = 0.5 * ops.mean(ops.square(ops.squeeze(self.value(s), -1) - v_target))
            self.apply_gradients("value", tape, value_loss, self.value.trainable_variables)

        entropy = -ops.mean(log_pi)
        alpha_loss = self._update_alpha(entropy)
        return self._metric_logs(critic_loss, actor_loss + value_loss, alpha_loss, entropy, q1, q2, y)

    def _update_discrete(self, batch: dict[str, Any]) -> dict[str, Any]:
        s = self.preprocess(batch["observation"])
        s_next = self.preprocess(batch["next_observation"])
        a = ops.cast(ops.reshape(batch["action"], (-1,)), "int32") - self.action_space.start
        r = batch["reward"] * self.reward_scale(self.num_gradient_steps)
        not_done = 1.0 - batch["terminated"]
        discount = batch.get("discount", self.gamma)  # gamma^m with n-step returns
        weight = batch.get("weight", 1.0)  # importance sampling, with prioritized replay
        alpha = ops.exp(self.log_alpha)

        # Critic: y = r + gamma * (1 - d) * sum_a' pi(a'|s') [min_i Q_targ_i(s', a') - alpha log pi(a'|s')]
        if self.use_value_network:
            v_next = ops.squeeze(self.value_target(s_next), -1)
        else:
            log_pi_next = ops.log_softmax(self.actor(s_next), axis=-1)
            q_next = ops.minimum(self.critic1_target(s_next), self.critic2_target(s_next))
            v_next = ops.sum(ops.exp(log_pi_next) * (q_next - alpha * log_pi_next), axis=-1)
        y = ops.stop_gradient(r + discount * not_done * v_next)
        with tf.GradientTape() as tape:
            q1_all, q2_all = self.critic1(s), self.critic2(s)
            q1 = ops.take_along_axis(q1_all, a[:, None], axis=-1)[:, 0]
            q2 = ops.take_along_axis(q2_all, a[:, None], axis=-1)[:, 0]
            critic_loss = 0.5 * ops.mean(weight * (ops.square(q1 - y) + ops.square(q2 - y)))
        self.apply_gradients("critic", tape, critic_loss, self.optimizer_roles()["critic"])

        # Actor: minimise E_s sum_a pi(a|s) [alpha log pi(a|s) - min_i Q_i(s, a)]
        min_q = ops.stop_gradient(ops.minimum(q1_all, q2_all))
        with tf.GradientTape() as tape:
            log_pi = ops.log_softmax(self.actor(s), axis=-1)
            pi = ops.exp(log_pi)
            actor_loss = ops.mean(ops.sum(pi * (alpha * log_pi - min_q), axis=-1))
        self.apply_gradients("actor", tape, actor_loss, self.actor.trainable_variables)

        value_loss = 0.0
        if self.use_value_network:
            v_target = ops.stop_gradient(ops.sum(pi * (min_q - alpha * log_pi), axis=-1))
            with tf.GradientTape() as tape:
                value_loss = 0.5 * ops.mean(ops.square(ops.squeeze(self.value(s), -1) - v_target))
            self.apply_gradients("value", tape, value_loss, self.value.trainable_variables)

        entropy = ops.mean(-ops.sum(pi * log_pi, axis=-1))
        alpha_loss = self._update_alpha(entropy)
        return self._metric_logs(critic_loss, actor_loss + value_loss, alpha_loss, entropy, q1, q2, y)

    def _update_alpha(self, entropy: Any) -> Any:
        """Temperature: minimise log(alpha) * (H(pi) - target_entropy)."""
        if not self.auto_alpha:
            return ops.zeros(())
        entropy = ops.stop_gradient(entropy)
        with tf.GradientTape() as tape:
            alpha_loss = self.log_alpha * (entropy - self.target_entropy)
        self.apply_gradients("alpha", tape, alpha_loss, [self.log_alpha])
        return alpha_loss

    def _metric_logs(self, critic_loss, actor_loss, alpha_loss, entropy, q1, q2, y) -> dict[str, Any]:
        return {
            # Genetic SAC's delta: the smaller of the two critics' TD errors.
            TD_ERRORS_KEY: ops.minimum(ops.abs(q1 - y), ops.abs(q2 - y)),
            "loss": critic_loss + actor_loss,
            "critic_loss": critic_loss,
            "actor_loss": actor_loss,
            "alpha_loss": alpha_loss,
            "alpha": ops.exp(self.log_alpha),
            "entropy": entropy,
            "q_mean": ops.mean(q1),
            "q_std": ops.std(q1),
            "q_diff": ops.mean(ops.abs(q1 - q2)),
        }

    # ---------------------------------------------------------------- config
    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            hidden=list(self.hidden),
            activation=self.activation,
            alpha=self.alpha_setting,
            initial_alpha=self.initial_alpha,
            target_entropy=self.target_entropy_setting,
            reward_scale=schedules.serialize(self.reward_scale),
            max_grad_norm=self.max_grad_norm,
            use_value_network=self.use_value_network,
        )
        return config

    @classmethod
    def from_config(cls, config: dict) -> "SAC":
        config = dict(config)
        config["reward_scale"] = schedules.get(config.get("reward_scale", 1.0))
        return super().from_config(config)
