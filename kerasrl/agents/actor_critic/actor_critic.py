"""The one-network actor-critic of the Keras course (Monte-Carlo returns, Huber critic)."""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf
from keras import ops

from kerasrl import returns
from kerasrl.agents.on_policy import OnPolicyAgent

EPSILON = float(np.finfo(np.float32).eps)  # keeps the normalisation finite for a batch of equal returns


@keras.saving.register_keras_serializable(package="kerasrl")
class ActorCritic(OnPolicyAgent):
    """Advantage actor-critic with one network: a shared torso, a policy head and a value head.

    The actor-critic that opens Keras' RL examples (CartPole): each update
    takes a batch of whole episodes (one by default), the Monte-Carlo
    returns G_t, normalised over the batch, and minimises

        actor loss  = −Σ_t log π(a_t|s_t) · (G_t − V(s_t))   (the advantage held fixed)
        critic loss = Σ_t Huber(G_t − V(s_t))

    summed over the batch's steps, as the example does. A return cut by a
    time limit or by the rollout's end bootstraps from V.

    Discrete actions get a softmax head; Box actions a Gaussian head (the
    mean, in [-1, 1] units of the Box, with a learned state-independent
    log standard deviation).

    Args:
        observation_space: a gymnasium Box or Discrete space.
        action_space: a gymnasium Discrete or Box space.
        hidden: the shared torso's layer sizes.
        activation: the torso's activation.
        gamma: discount factor.
        normalize_returns: standardise the returns over each batch (the
            example's choice); False regresses on the raw returns.
        max_grad_norm: clip the gradient to this global norm.
        log_std_init: initial log standard deviation (Box actions).
        normalize_observations, normalize_rewards, clip_observations,
            clip_rewards: running normalisation kept in the agent (off by
            default; see `kerasrl.agents.on_policy.OnPolicyAgent`).
        seed: seeds the initialisation and the policy's sampling.

    Example:

    ```python
    env = gym.make("CartPole-v1")
    ac = kerasrl.ActorCritic.from_env(env, hidden=(128,))
    ac.compile(optimizer=keras.optimizers.Adam(1e-2))
    ac.fit(kerasrl.RolloutDataset(env, ac, episodes_per_batch=1, seed=0), epochs=30, steps_per_epoch=20)
    ```
    """

    metric_names = ("loss", "actor_loss", "critic_loss", "entropy")

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        hidden: Sequence[int] = (128,),
        activation: str = "relu",
        gamma: float = 0.99,
        normalize_returns: bool = True,
        max_grad_norm: float | None = None,
        log_std_init: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(observation_space, action_space, gamma=gamma, seed=seed, log_std_init=log_std_init,
                         **kwargs)
        self.hidden = tuple(int(h) for h in hidden)
        if not self.hidden:
            raise ValueError("ActorCritic needs at least one shared hidden layer (hidden=(128,), ...).")
        self.activation = activation
        self.normalize_returns = bool(normalize_returns)
        self.max_grad_norm = max_grad_norm
        init = lambda i: keras.initializers.GlorotUniform(seed=None if seed is None else seed * 100 + i)
        torso = keras.Sequential(
            [keras.Input((self.obs_dim,))]
            + [keras.layers.Dense(u, activation=activation, kernel_initializer=init(i), dtype=self.dtype_policy)
               for i, u in enumerate(self.hidden)], name="torso")
        head = lambda units, name, i: keras.Sequential(
            [keras.Input((self.hidden[-1],)), keras.layers.Dense(units, kernel_initializer=init(i), dtype="float32")],
            name=name)
        policy_head = head(self.act_dim, "policy_head", len(self.hidden))
        value_head = head(1, "value_head", len(self.hidden) + 1)
        inputs = keras.Input((self.obs_dim,), name="observation")
        features = torso(inputs)
        self.network = keras.Model(inputs, [policy_head(features), value_head(features)], name="actor_critic")
        self.built = True

    def default_optimizer(self) -> keras.optimizers.Optimizer:
        return keras.optimizers.Adam(1e-2)  # the example's

    # ------------------------------------------------------------- structure
    def policy_networks(self) -> dict[str, keras.Model]:
        return {name: self.network.get_layer(name) for name in ("torso", "policy_head", "value_head")}

    def optimizer_roles(self) -> dict[str, list]:
        return {"network": self.trainable_variables}

    def _heads(self, x: Any) -> tuple[Any, Any]:
        out, value = self.network(x)
        return out, ops.squeeze(value, -1)

    def _numpy_heads(self, nets: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        features = nets["torso"](x)
        return nets["policy_head"](features), nets["value_head"](features)[:, 0]

    # -------------------------------------------------------------- rollouts
    def rollout_defaults(self) -> dict[str, Any]:
        return {"episodes_per_batch": 1, "batch_size": None, "n_epochs": 1}

    def rollout_fields(self) -> tuple[str, ...]:
        return ("observation", "action", "return")

    def rollout_targets(self, rollout: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"return": returns.discounted_returns(rollout["reward"], rollout["next_value"],
                                                     rollout["terminated"], rollout["truncated"], self.gamma)}

    # ---------------------------------------------------------------- update
    def update(self, batch: dict[str, Any]) -> dict[str, Any]:
        s = ops.cast(batch["observation"], "float32")  # the network input the rollout stored
        g = batch["return"]
        if self.normalize_returns:
            g = (g - ops.mean(g)) / (ops.std(g) + EPSILON)
        with tf.GradientTape() as tape:
            out, value = self._heads(s)
            log_prob, entropy = self.log_prob_and_entropy(out, batch["action"])
            advantage = ops.stop_gradient(g - value)
            actor_loss = -ops.sum(log_prob * advantage)
            error = ops.abs(g - value)
            critic_loss = ops.sum(ops.where(error <= 1.0, 0.5 * ops.square(error), error - 0.5))  # Huber, delta 1
            loss = actor_loss + critic_loss
        self.apply_gradients("network", tape, loss, self.optimizer_roles()["network"])
        return {"loss": loss, "actor_loss": actor_loss, "critic_loss": critic_loss, "entropy": ops.mean(entropy)}

    # ---------------------------------------------------------------- config
    def get_config(self) -> dict:
        config = super().get_config()
        config.update(hidden=list(self.hidden), activation=self.activation,
                      normalize_returns=self.normalize_returns, max_grad_norm=self.max_grad_norm)
        return config
