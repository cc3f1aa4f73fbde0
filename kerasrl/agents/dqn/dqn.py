"""Deep Q-Network with double-Q targets and a dueling head."""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf
from keras import ops

from kerasrl import acting, schedules
from kerasrl.agents.base import TD_ERRORS_KEY, Agent, copy_weights
from kerasrl.networks import mlp, nature_cnn

TORSOS = ("mlp", "nature_cnn")

LOSSES = ("huber", "mse")


@keras.saving.register_keras_serializable(package="kerasrl")
class DQN(Agent):
    """Deep Q-learning (Mnih et al. 2015) with the usual improvements.

    * `double=True`: the online network picks the next action, the target
      network scores it (van Hasselt et al. 2016); `False`: max of the target.
    * `dueling=True`: `Q = V + A - mean A` (Wang et al. 2016).
    * Huber loss (or MSE), each network's gradient clipped to a global norm
      (10 by default), importance-sampling weights from a prioritized buffer,
      n-step discounts from an n-step buffer.
    * Acting is epsilon-greedy: an `EnvDataset` takes epsilon from its
      `exploration` schedule (by default `default_exploration()`: 1.0 to 0.05
      over the first 10k env steps); `act(obs, deterministic=True)` is greedy.

    Target network: hard copies every `target_update_interval` gradient steps
    by default (tau=1.0); `callbacks.HardTargetUpdate(every=...)` or
    `SoftTargetUpdate(tau=...)` change it.

    Args:
        observation_space: a gymnasium Box or Discrete space.
        action_space: a gymnasium Discrete space.
        hidden: hidden layer sizes of the Q-network (MLP torso).
        torso: "mlp", or "nature_cnn" for `(k, H, W)` frame stacks such as
            `kerasrl.envs.make_atari` gives (scaled from 0-255 inside the model).
        activation: hidden activation.
        dueling: dueling head instead of a plain linear one.
        double: double-Q targets instead of the plain max.
        loss: "huber" or "mse".
        max_grad_norm: global gradient-norm clip (None: no clipping).
        gamma: discount factor.
        tau: target blend of the default target update (1.0 = copy).
        target_update_interval: gradient steps between target updates.
        epsilon: exploration of `act(obs)` outside an EnvDataset.
        seed: seeds network initialisation and acting.

    Example:

    ```python
    env = gym.make("CartPole-v1")
    agent = kerasrl.DQN.from_env(env, dueling=True, double=True)
    agent.compile(optimizer=keras.optimizers.Adam(1e-3))
    agent.fit(kerasrl.EnvDataset(env, agent, batch_size=64, train_freq=4), epochs=10, steps_per_epoch=1000)
    ```
    """

    metric_names = ("loss", "q_mean", "td_error_mean")

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        torso: str = "mlp",
        dueling: bool = False,
        double: bool = True,
        loss: str = "huber",
        max_grad_norm: float | None = 10.0,
        gamma: float = 0.99,
        tau: float = 1.0,
        target_update_interval: int = 1000,
        epsilon: float = 0.05,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(observation_space, action_space, gamma=gamma, tau=tau,
                         target_update_interval=target_update_interval, seed=seed, **kwargs)
        if not self.discrete:
            raise ValueError(f"DQN needs a Discrete action space, got {self.action_space!r}; "
                             "use SAC, TD3 or DDPG for continuous actions.")
        if torso not in TORSOS:
            raise ValueError(f"DQN torso must be one of {TORSOS}, got {torso!r}.")
        if torso == "nature_cnn" and len(getattr(self.observation_space, "shape", ())) != 3:
            raise ValueError(f"The nature_cnn torso needs (frames, height, width) observations, got "
                             f"{self.observation_space!r}.")
        if loss not in LOSSES:
            raise ValueError(f"DQN loss must be one of {LOSSES}, got {loss!r}.")
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = activation
        self.dueling = bool(dueling)
        self.double = bool(double)
        self.loss_name = loss
        self.max_grad_norm = max_grad_norm
        self.epsilon = float(epsilon)
        self.n_actions = int(self.action_space.n)
        self.torso = torso
        self.flatten_observations = torso == "mlp"
        net_seed = None if seed is None else seed * 100
        if torso == "nature_cnn":
            shape = self.observation_space.shape
            self.q_network = nature_cnn(shape, self.n_actions, "q_network", net_seed, self.dueling, self.dtype_policy)
            self.q_target = nature_cnn(shape, self.n_actions, "q_target", dueling=self.dueling, dtype=self.dtype_policy)
        else:
            self.q_network = mlp(self.obs_dim, self.hidden, self.n_actions, activation, name="q_network",
                                 seed=net_seed, dueling=self.dueling, dtype=self.dtype_policy)
            self.q_target = mlp(self.obs_dim, self.hidden, self.n_actions, activation, name="q_target",
                                dueling=self.dueling, dtype=self.dtype_policy)
        self.q_target.trainable = False
        copy_weights(self.q_network, self.q_target)
        self.built = True

    # ------------------------------------------------------------- structure
    def target_pairs(self) -> list[tuple[keras.Model, keras.Model]]:
        return [(self.q_network, self.q_target)]

    def optimizer_roles(self) -> dict[str, list]:
        return {"q": self.q_network.trainable_variables}

    def policy_networks(self) -> dict[str, keras.Model]:
        return {"q": self.q_network}

    def default_exploration(self) -> schedules.Schedule:
        return schedules.Linear(1.0, 0.05, 10_000)

    # ---------------------------------------------------------------- policy
    def _policy(self, obs: np.ndarray, deterministic: bool, rng: np.random.Generator, nets: dict) -> np.ndarray:
        greedy = nets["q"](obs).argmax(axis=-1) + self.action_space.start
        return greedy if deterministic else acting.epsilon_greedy(greedy, self.epsilon, self.action_space, rng)

    def _deterministic_action(self, x: Any) -> Any:
        return self._greedy_action(self.q_network(x))

    # ---------------------------------------------------------------- update
    def update(self, batch: dict[str, Any]) -> dict[str, Any]:
        s = self.preprocess(batch["observation"])
        s_next = self.preprocess(batch["next_observation"])
        a = ops.cast(ops.reshape(batch["action"], (-1,)), "int32") - self.action_space.start
        r = batch["reward"]
        not_done = 1.0 - batch["terminated"]
        discount = batch.get("discount", self.gamma)  # gamma^m with n-step returns
        weight = batch.get("weight", 1.0)  # importance sampling, with prioritized replay

        # y = r + gamma * (1 - d) * Q_targ(s', a*), a* = argmax_a' Q(s', a') (double) or of Q_targ (plain)
        q_next_all = self.q_target(s_next)
        if self.double:
            a_star = ops.argmax(self.q_network(s_next), axis=-1)
            q_next = ops.take_along_axis(q_next_all, a_star[:, None], axis=-1)[:, 0]
        else:
            q_next = ops.max(q_next_all, axis=-1)
        y = ops.stop_gradient(r + discount * not_done * q_next)

        with tf.GradientTape() as tape:
            q = ops.take_along_axis(self.q_network(s), a[:, None], axis=-1)[:, 0]
            td_error = q - y
            if self.loss_name == "huber":  # quadratic within |delta| <= 1, linear outside
                small = ops.minimum(ops.abs(td_error), 1.0)
                per_sample = 0.5 * ops.square(small) + (ops.abs(td_error) - small)
            else:
                per_sample = 0.5 * ops.square(td_error)
            loss = ops.mean(weight * per_sample)
        self.apply_gradients("q", tape, loss, self.q_network.trainable_variables)
        return {
            "loss": loss,
            "q_mean": ops.mean(q),
            "td_error_mean": ops.mean(ops.abs(td_error)),
            TD_ERRORS_KEY: ops.abs(td_error),
        }

    # ---------------------------------------------------------------- config
    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            hidden=list(self.hidden),
            activation=self.activation,
            torso=self.torso,
            dueling=self.dueling,
            double=self.double,
            loss=self.loss_name,
            max_grad_norm=self.max_grad_norm,
            epsilon=self.epsilon,
        )
        return config
