"""Advantage Actor-Critic (synchronous A3C) with Stable-Baselines3's names and defaults."""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import keras
import tensorflow as tf
from keras import ops

from kerasrl.agents.on_policy import GAEAgent


@keras.saving.register_keras_serializable(package="kerasrl")
class A2C(GAEAgent):
    """A2C (Mnih et al. 2016, synchronous), Box and Discrete actions.

    One gradient step per rollout of `n_steps` per environment copy (5 by
    default, so many environment copies make the batch):

        policy loss = −mean(A_t · log π(a_t|s_t))       (GAE(λ) advantages, λ = 1 by default)
        value loss  = mean((V_target − V(s_t))²)
        loss        = policy loss − ent_coef · entropy + vf_coef · value loss

    `compile()` without an optimizer gives Stable-Baselines3's: RMSprop(7e-4,
    rho=0.99) with torch's eps=1e-5, which Keras writes `epsilon=1e-10` (Keras
    adds it inside the square root, torch outside).

    Args:
        observation_space: a gymnasium Box or Discrete space.
        action_space: a gymnasium Discrete or Box space.
        n_steps: steps per environment copy in each rollout.
        gamma: discount factor.
        gae_lambda: λ of GAE (1: Monte-Carlo advantages within the rollout).
        ent_coef: weight of the entropy bonus.
        vf_coef: weight of the value loss.
        max_grad_norm: clip the gradient to this global norm.
        normalize_advantage: standardise the advantages over each rollout.
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
    env = gym.make_vec("CartPole-v1", num_envs=8)
    a2c = kerasrl.A2C.from_env(env)
    a2c.compile()  # RMSprop(7e-4), as Stable-Baselines3
    a2c.fit(kerasrl.RolloutDataset(env, a2c, seed=0), epochs=10, steps_per_epoch=500)
    ```
    """

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        n_steps: int = 5,
        gamma: float = 0.99,
        gae_lambda: float = 1.0,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float | None = 0.5,
        normalize_advantage: bool = False,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        shared_network: bool = False,
        log_std_init: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(observation_space, action_space, n_steps=n_steps, batch_size=None, n_epochs=1,
                         gamma=gamma, gae_lambda=gae_lambda, ent_coef=ent_coef, vf_coef=vf_coef,
                         max_grad_norm=max_grad_norm, normalize_advantage=normalize_advantage, hidden=hidden,
                         activation=activation, shared_network=shared_network, log_std_init=log_std_init,
                         seed=seed, **kwargs)

    def update(self, batch: dict[str, Any]) -> dict[str, Any]:
        s = ops.cast(batch["observation"], "float32")  # the network input the rollout stored
        advantage = self._advantages(batch)
        with tf.GradientTape() as tape:
            out, value = self._heads(s)
            log_prob, entropy = self.log_prob_and_entropy(out, batch["action"])
            policy_loss = -ops.mean(advantage * log_prob)
            value_loss = ops.mean(ops.square(batch["value_target"] - value))
            entropy_loss = -ops.mean(entropy)
            loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
        self._apply(tape, loss)
        return {
            "loss": loss, "policy_loss": policy_loss, "value_loss": value_loss, "entropy_loss": entropy_loss,
            "entropy": -entropy_loss, "explained_variance": batch["explained_variance"][0],
        }

    def default_optimizer(self) -> keras.optimizers.Optimizer:
        # SB3's torch RMSprop(7e-4, alpha=0.99, eps=1e-5) divides by sqrt(v) + eps; Keras' by sqrt(v + eps), so
        # its epsilon is eps² here (with 1e-5 inside the root, a gradient of 1e-4 stepped ~160x less than torch's).
        return keras.optimizers.RMSprop(7e-4, rho=0.99, epsilon=1e-10)

    def get_config(self) -> dict:
        config = super().get_config()
        for fixed in ("batch_size", "n_epochs"):  # one pass, one batch
            config.pop(fixed)
        return config
