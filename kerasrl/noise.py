"""Action noise for agents with a deterministic policy (DDPG, TD3).

The noise is added to the policy's action in the networks' [-1, 1] units
(before scaling to the Box bounds), then clipped to [-1, 1], as in
Stable-Baselines3. `EnvDataset(action_noise=...)` draws one value per
environment copy at every step and restarts a copy's process when its episode
ends; acting with `deterministic=True` (evaluation) adds none.

Example:

```python
from kerasrl import noise, schedules
data = kerasrl.EnvDataset(env, agent, action_noise=noise.Gaussian(schedules.Linear(0.3, 0.05, 50_000)))
data = kerasrl.EnvDataset(env, agent, action_noise=noise.OrnsteinUhlenbeck(sigma=0.2, theta=0.15, dt=1e-2))
```
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from kerasrl import schedules


class ActionNoise:
    """Base class: `noise.sample(rng, num_envs, action_dim, env_steps)` -> `(num_envs, action_dim)`.

    Args:
        sigma: the noise scale: a number or a schedule of environment steps.
    """

    def __init__(self, sigma: float | schedules.Schedule):
        self.sigma = schedules.get(sigma)

    def sample(self, rng: np.random.Generator, num_envs: int, action_dim: int, env_steps: int = 0) -> np.ndarray:
        raise NotImplementedError

    def reset(self, env_ids: Any = None) -> None:
        """Restarts the process of the given environment copies (all when None)."""

    def get_config(self) -> dict:
        return {"sigma": schedules.serialize(self.sigma)}

    @classmethod
    def from_config(cls, config: dict) -> "ActionNoise":
        config = dict(config)
        config["sigma"] = schedules.get(config["sigma"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="kerasrl")
class Gaussian(ActionNoise):
    """Independent normal noise `N(0, sigma^2)` at every step (TD3's exploration).

    Args:
        sigma: the standard deviation in [-1, 1] action units; a number or a
            schedule of environment steps.
    """

    def sample(self, rng: np.random.Generator, num_envs: int, action_dim: int, env_steps: int = 0) -> np.ndarray:
        return self.sigma(env_steps) * rng.standard_normal((num_envs, action_dim), dtype=np.float32)


@keras.saving.register_keras_serializable(package="kerasrl")
class OrnsteinUhlenbeck(ActionNoise):
    """Temporally correlated noise (the DDPG paper's exploration), one process per environment copy.

    `x <- x + theta * (mu - x) * dt + sigma * sqrt(dt) * N(0, 1)`, from `x0`
    at every episode start. For small `theta * dt` its stationary standard
    deviation is about `sigma / sqrt(2 * theta)` and its correlation after k
    steps `(1 - theta * dt)^k`.

    Args:
        sigma: the diffusion scale: a number or a schedule of environment steps.
        theta: the pull towards `mu`.
        dt: the time step.
        mu: the mean the process reverts to.
        x0: the value each process restarts from.
    """

    def __init__(self, sigma: float | schedules.Schedule = 0.2, theta: float = 0.15, dt: float = 1e-2,
                 mu: float = 0.0, x0: float = 0.0):
        super().__init__(sigma)
        if theta < 0 or dt <= 0:
            raise ValueError(f"OrnsteinUhlenbeck needs theta >= 0 and dt > 0, got theta={theta}, dt={dt}.")
        self.theta, self.dt, self.mu, self.x0 = float(theta), float(dt), float(mu), float(x0)
        self.state: np.ndarray | None = None

    def sample(self, rng: np.random.Generator, num_envs: int, action_dim: int, env_steps: int = 0) -> np.ndarray:
        if self.state is None or self.state.shape != (num_envs, action_dim):
            self.state = np.full((num_envs, action_dim), self.x0, dtype=np.float32)
        self.state += (self.theta * (self.mu - self.state) * self.dt
                       + self.sigma(env_steps) * np.sqrt(self.dt)
                       * rng.standard_normal(self.state.shape, dtype=np.float32))
        return self.state.copy()

    def reset(self, env_ids: Any = None) -> None:
        if self.state is not None:
            self.state[slice(None) if env_ids is None else env_ids] = self.x0

    def get_config(self) -> dict:
        return {**super().get_config(), "theta": self.theta, "dt": self.dt, "mu": self.mu, "x0": self.x0}


def get(value: Any) -> ActionNoise | None:
    """An ActionNoise from an instance, a number (Gaussian sigma), a config dict or None."""
    if value is None or isinstance(value, ActionNoise):
        return value
    if isinstance(value, (int, float)):
        return Gaussian(float(value))
    if isinstance(value, dict):
        return keras.saving.deserialize_keras_object(value)
    raise ValueError(f"Cannot make action noise from {value!r}; use kerasrl.noise.Gaussian or OrnsteinUhlenbeck.")


def serialize(noise: ActionNoise | None) -> Any:
    return None if noise is None else keras.saving.serialize_keras_object(noise)
