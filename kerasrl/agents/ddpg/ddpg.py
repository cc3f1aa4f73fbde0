"""Deep Deterministic Policy Gradient (DDPG)."""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import keras

from kerasrl.agents.td3 import TD3

# The TD3 settings that make its update DDPG's.
_DDPG = {"policy_delay": 1, "target_noise": 0.0, "target_noise_clip": 0.0}


@keras.saving.register_keras_serializable(package="kerasrl")
class DDPG(TD3):
    """DDPG (Lillicrap et al. 2016) for Box actions.

    A deterministic tanh actor scaled to the Box bounds, one critic, and
    target copies of both, blended softly (tau=0.005) after every update. The
    update is `TD3.update` with one critic, no policy delay and no target
    smoothing:

    * critic: minimise `E[w * (Q(s, a) - y)^2]`, `y = r + gamma * (1 - d) * Q_targ(s', mu_targ(s'))`;
    * actor: maximise `Q(s, mu(s))`.

    Exploration: `EnvDataset(action_noise=...)`, e.g.
    `kerasrl.noise.OrnsteinUhlenbeck(sigma=0.2, theta=0.15, dt=1e-2)` as in
    the DDPG paper (Gaussian(0.1) by default).

    Args:
        observation_space: a gymnasium Box or Discrete space.
        action_space: a gymnasium Box space.
        hidden: hidden layer sizes of the actor and the critic.
        activation: hidden activation.
        gamma: discount factor.
        tau: target blend factor of the default target update.
        target_update_interval: gradient steps between target updates.
        max_grad_norm: clip each network's gradient to this global norm.
        seed: seeds network initialisation.

    Example:

    ```python
    ddpg = kerasrl.DDPG.from_env(gym.make("Pendulum-v1"))
    ddpg.compile(actor_optimizer=keras.optimizers.Adam(1e-3), critic_optimizer=keras.optimizers.Adam(2e-3))
    data = kerasrl.EnvDataset(gym.make("Pendulum-v1"), ddpg, batch_size=64,
                              action_noise=kerasrl.noise.OrnsteinUhlenbeck(sigma=0.2))
    ddpg.fit(data, epochs=20, steps_per_epoch=1000)
    ```
    """

    metric_names = ("loss", "critic_loss", "actor_loss", "q_mean", "q_std")
    n_critics = 1

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        hidden: Sequence[int] = (400, 300),
        activation: str = "relu",
        gamma: float = 0.99,
        tau: float = 0.005,
        target_update_interval: int = 1,
        max_grad_norm: float | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(observation_space, action_space, hidden=hidden, activation=activation, gamma=gamma,
                         tau=tau, target_update_interval=target_update_interval, max_grad_norm=max_grad_norm,
                         seed=seed, **_DDPG, **kwargs)

    def get_config(self) -> dict:
        config = super().get_config()
        for key in _DDPG:
            config.pop(key)
        return config
