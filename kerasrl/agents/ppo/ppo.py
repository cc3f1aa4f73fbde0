"""Proximal Policy Optimization with Stable-Baselines3's names and defaults."""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import keras
import tensorflow as tf
from keras import ops

from kerasrl import schedules
from kerasrl.agents.on_policy import GAEAgent


@keras.saving.register_keras_serializable(package="kerasrl")
class PPO(GAEAgent):
    """PPO with the clipped surrogate objective (Schulman et al. 2017), Box and Discrete actions.

    Each rollout (`n_steps` per environment copy) is turned into GAE(λ)
    advantages and value targets, then trained on for `n_epochs` passes of
    `batch_size` minibatches; each minibatch is one `train_step`:

        r_t(θ)       = π_θ(a_t|s_t) / π_old(a_t|s_t)
        policy loss  = −mean(min(r_t A_t, clip(r_t, 1 − ε, 1 + ε) A_t))
        value loss   = mean((V_target − V(s_t))²)     (V clipped around the old value by clip_range_vf)
        loss         = policy loss − ent_coef · entropy + vf_coef · value loss

    With `target_kl`, the rest of a rollout's minibatches make no gradient
    step once a minibatch's approximate KL divergence exceeds 1.5 · target_kl
    (Stable-Baselines3's rule); they still count as train steps.

    Args:
        observation_space: a gymnasium Box or Discrete space.
        action_space: a gymnasium Discrete or Box space.
        n_steps: steps per environment copy in each rollout.
        batch_size: minibatch size.
        n_epochs: passes over each rollout.
        gamma: discount factor.
        gae_lambda: λ of GAE (1: Monte-Carlo advantages, 0: one-step TD).
        clip_range: ε, a number or a `kerasrl.schedules` schedule of env steps.
        clip_range_vf: clip of the value around its old estimate (None: no clip);
            a number or a schedule of env steps.
        ent_coef: weight of the entropy bonus.
        vf_coef: weight of the value loss.
        max_grad_norm: clip the gradient to this global norm.
        normalize_advantage: standardise the advantages over each minibatch.
        target_kl: stop a rollout's gradient steps past this KL (None: never).
        hidden: hidden layer sizes of the policy and value networks.
        activation: hidden activation.
        shared_network: one torso for both heads instead of two networks.
        log_std_init: initial log standard deviation (Box actions).
        normalize_observations, normalize_rewards, clip_observations,
            clip_rewards: running normalisation kept in the agent (off by
            default; see `kerasrl.agents.on_policy.OnPolicyAgent`).
        seed: seeds the initialisation and the policy's sampling.

    Example:

    ```python
    env = gym.make_vec("LunarLander-v3", num_envs=16)
    ppo = kerasrl.PPO.from_env(env)
    ppo.compile(optimizer=keras.optimizers.Adam(3e-4))
    ppo.fit(kerasrl.RolloutDataset(env, ppo, n_steps=1024, seed=0), epochs=60)
    ```
    """

    metric_names = GAEAgent.metric_names + ("approx_kl", "clip_fraction")

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        n_steps: int = 2048,
        batch_size: int = 64,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float | schedules.Schedule = 0.2,
        clip_range_vf: float | schedules.Schedule | None = None,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float | None = 0.5,
        normalize_advantage: bool = True,
        target_kl: float | None = None,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        shared_network: bool = False,
        log_std_init: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(observation_space, action_space, n_steps=n_steps, batch_size=batch_size,
                         n_epochs=n_epochs, gamma=gamma, gae_lambda=gae_lambda, ent_coef=ent_coef,
                         vf_coef=vf_coef, max_grad_norm=max_grad_norm, normalize_advantage=normalize_advantage,
                         hidden=hidden, activation=activation, shared_network=shared_network,
                         log_std_init=log_std_init, seed=seed, **kwargs)
        self.clip_range = schedules.get(clip_range)
        self.clip_range_vf = None if clip_range_vf is None else schedules.get(clip_range_vf)
        self.target_kl = None if target_kl is None else float(target_kl)
        # The rollout whose remaining minibatches make no gradient step (target_kl exceeded).
        self.kl_stopped_rollout = keras.Variable(-1, dtype="int64", trainable=False, name="kl_stopped_rollout")

    def rollout_fields(self) -> tuple[str, ...]:
        return super().rollout_fields() + ("rollout",)

    def update(self, batch: dict[str, Any]) -> dict[str, Any]:
        s = ops.cast(batch["observation"], "float32")  # the network input the rollout stored
        old_log_prob, old_value = batch["log_prob"], batch["value"]
        advantage = self._advantages(batch)
        value_target = batch["value_target"]
        env_steps = ops.cast(batch.get("env_steps", 0), "float32")
        epsilon = self.clip_range(env_steps)
        with tf.GradientTape() as tape:
            out, value = self._heads(s)
            log_prob, entropy = self.log_prob_and_entropy(out, batch["action"])
            log_ratio = log_prob - old_log_prob
            ratio = ops.exp(log_ratio)
            surrogate = ops.minimum(ratio * advantage, ops.clip(ratio, 1.0 - epsilon, 1.0 + epsilon) * advantage)
            policy_loss = -ops.mean(surrogate)
            if self.clip_range_vf is not None:
                epsilon_vf = self.clip_range_vf(env_steps)
                value = old_value + ops.clip(value - old_value, -epsilon_vf, epsilon_vf)
            value_loss = ops.mean(ops.square(value_target - value))
            entropy_loss = -ops.mean(entropy)
            loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
        # Schulman's low-variance estimator of KL(π_old ‖ π_θ).
        approx_kl = ops.mean((ratio - 1.0) - log_ratio)
        skip = False
        if self.target_kl is not None:
            rollout = ops.cast(batch["rollout"][0], "int64")
            stopped = ops.logical_or(ops.equal(self.kl_stopped_rollout, rollout), approx_kl > 1.5 * self.target_kl)
            self.kl_stopped_rollout.assign(ops.where(stopped, rollout, self.kl_stopped_rollout))
            skip = stopped
        self._apply(tape, loss, skip)
        return {
            "loss": loss, "policy_loss": policy_loss, "value_loss": value_loss, "entropy_loss": entropy_loss,
            "entropy": -entropy_loss, "approx_kl": approx_kl,
            "clip_fraction": ops.mean(ops.cast(ops.abs(ratio - 1.0) > epsilon, "float32")),
            "explained_variance": batch["explained_variance"][0],
        }

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(clip_range=schedules.serialize(self.clip_range),
                      clip_range_vf=None if self.clip_range_vf is None else schedules.serialize(self.clip_range_vf),
                      target_kl=self.target_kl)
        return config
