"""Partially observed versions of gymnasium tasks, as in the LSTM-TD3 paper
(Meng et al. 2021, arXiv 2102.12344).

Four kinds of partial observability, each a gymnasium `ObservationWrapper`:

| kind | wrapper | what the agent sees |
|---|---|---|
| `remove_velocity` | `RemoveVelocity` | the observation without its velocity entries |
| `flickering` | `Flickering(prob=0.2)` | the whole observation zeroed with probability `prob` |
| `random_noise` | `RandomNoise(sigma=0.1)` | each entry plus N(0, sigma) noise |
| `random_sensor_missing` | `RandomSensorMissing(prob=0.1)` | each entry zeroed with probability `prob` |

Kinds combine with `_and_`, applied left to right, e.g.
`"remove_velocity_and_random_noise"`.

`remove_velocity` needs to know which entries are velocities; `VELOCITY_FREE`
lists the tasks it knows. For the PyBullet locomotion tasks it drops exactly
what the paper's wrapper drops: entries 3, 4 and 5, the torso's linear
velocity; the joint velocities stay in the observation.

The random wrappers draw from their own generator, seeded from the seed given
to `reset` (so `env.reset(seed=s)` makes the corruption reproducible, and the
task's own randomness is untouched).

Example:

```python
from kerasrl.envs import pomdp
env = pomdp.make("Pendulum-v1", "remove_velocity")   # cos θ and sin θ; θ' hidden
obs, info = env.reset(seed=0)                         # obs.shape == (2,)
noisy = pomdp.make("HalfCheetahBulletEnv-v0", "flickering", flicker_prob=0.3)
```
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

KINDS = ("remove_velocity", "flickering", "random_noise", "random_sensor_missing")


def _all_but(size: int, *dropped: int) -> tuple[int, tuple[int, ...]]:
    return size, tuple(i for i in range(size) if i not in dropped)


# env id -> (observation size, indices kept by remove_velocity)
VELOCITY_FREE: dict[str, tuple[int, tuple[int, ...]]] = {
    # classic control and Box2D (gymnasium's observation layouts)
    "Pendulum-v1": _all_but(3, 2),  # cos θ, sin θ | θ'
    "CartPole-v1": _all_but(4, 1, 3),  # x, θ | x', θ'
    "Acrobot-v1": _all_but(6, 4, 5),  # cos/sin of both joints | both joint velocities
    "MountainCar-v0": _all_but(2, 1),
    "MountainCarContinuous-v0": _all_but(2, 1),
    "LunarLander-v3": _all_but(8, 2, 3, 5),  # x, y, angle, legs | vx, vy, angular velocity
    # PyBullet (kerasrl.envs.bullet), as the paper's wrapper: the torso's linear velocity
    "HalfCheetahBulletEnv-v0": _all_but(26, 3, 4, 5),
    "AntBulletEnv-v0": _all_but(28, 3, 4, 5),
    "HopperBulletEnv-v0": _all_but(15, 3, 4, 5),
    "Walker2DBulletEnv-v0": _all_but(22, 3, 4, 5),
    "InvertedPendulumBulletEnv-v0": _all_but(5, 1, 4),  # cart and pole velocities
}


def _float_box(low: np.ndarray, high: np.ndarray, dtype: Any) -> gym.spaces.Box:
    return gym.spaces.Box(np.asarray(low, dtype), np.asarray(high, dtype), dtype=dtype)


class RemoveVelocity(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Keeps only the entries of the observation that are not velocities.

    Args:
        env: a task listed in `VELOCITY_FREE` (found by its spec id), or any
            flat Box task when `keep` is given.
        keep: indices to keep, for tasks the table does not list.
    """

    def __init__(self, env: gym.Env, keep: Any = None):
        gym.utils.RecordConstructorArgs.__init__(self, keep=keep)
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        env_id = env.spec.id if env.spec is not None else None
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"remove_velocity needs a flat Box observation space, {env_id} has {space}.")
        if keep is None:
            if env_id not in VELOCITY_FREE:
                raise ValueError(f"remove_velocity does not know which entries of {env_id!r} are velocities; "
                                 f"known tasks: {', '.join(VELOCITY_FREE)} (or pass keep=[indices]).")
            size, keep = VELOCITY_FREE[env_id]
            if space.shape != (size,):
                raise ValueError(f"remove_velocity expects {env_id} observations of shape ({size},), "
                                 f"got {space.shape}.")
        self.keep = np.asarray(keep, dtype=np.int64)
        if self.keep.ndim != 1 or not np.all((0 <= self.keep) & (self.keep < space.shape[0])):
            raise ValueError(f"keep={list(keep)} are not indices of observations of shape {space.shape}.")
        self.observation_space = _float_box(space.low[self.keep], space.high[self.keep], space.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.asarray(observation)[self.keep]


class _RandomObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """An observation wrapper with its own generator, seeded by `reset(seed=...)`."""

    salt = 0

    def __init__(self, env: gym.Env, **params: float):
        gym.utils.RecordConstructorArgs.__init__(self, **params)  # so env.spec can rebuild the wrapper
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box):
            raise ValueError(f"{type(self).__name__} needs a Box observation space, got {space}.")
        self.rng = np.random.default_rng()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.rng = np.random.default_rng([seed, self.salt])
        return super().reset(seed=seed, options=options)


def _box_with_zero(space: gym.spaces.Box) -> gym.spaces.Box:
    """`space` widened to hold zeros (what the zeroing wrappers return)."""
    return _float_box(np.minimum(space.low, 0), np.maximum(space.high, 0), space.dtype)


def _check_probability(name: str, value: float) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}.")
    return float(value)


class Flickering(_RandomObservation):
    """Zeroes the whole observation with probability `prob` at each step (frames drop out)."""

    salt = 1

    def __init__(self, env: gym.Env, prob: float = 0.2):
        super().__init__(env, prob=prob)
        self.prob = _check_probability("flicker_prob", prob)
        self.observation_space = _box_with_zero(env.observation_space)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        observation = np.asarray(observation)
        return np.zeros_like(observation) if self.rng.random() < self.prob else observation


class RandomNoise(_RandomObservation):
    """Adds N(0, sigma) noise to each entry of the observation (noisy sensors)."""

    salt = 2

    def __init__(self, env: gym.Env, sigma: float = 0.1):
        super().__init__(env, sigma=sigma)
        if not float(sigma) >= 0:
            raise ValueError(f"noise_sigma must be >= 0, got {sigma}.")
        self.sigma = float(sigma)
        space = env.observation_space
        self.observation_space = _float_box(np.full(space.shape, -np.inf), np.full(space.shape, np.inf), space.dtype)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        observation = np.asarray(observation)
        return (observation + self.rng.normal(0.0, self.sigma, observation.shape)).astype(observation.dtype)


class RandomSensorMissing(_RandomObservation):
    """Zeroes each entry of the observation independently with probability `prob` (lost readings)."""

    salt = 3

    def __init__(self, env: gym.Env, prob: float = 0.1):
        super().__init__(env, prob=prob)
        self.prob = _check_probability("missing_prob", prob)
        self.observation_space = _box_with_zero(env.observation_space)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        observation = np.asarray(observation)
        return np.where(self.rng.random(observation.shape) < self.prob, 0, observation).astype(observation.dtype)


def parse_kind(kind: str) -> list[str]:
    """The single kinds of a kind such as "remove_velocity_and_flickering", checked."""
    parts = str(kind).split("_and_")
    unknown = [part for part in parts if part not in KINDS]
    if unknown or len(set(parts)) != len(parts):
        raise ValueError(f"Unknown POMDP kind {kind!r}: use one of {', '.join(KINDS)}, "
                         "or two different ones joined by '_and_' (e.g. 'remove_velocity_and_flickering').")
    return parts


def wrap(env: gym.Env, kind: str, flicker_prob: float = 0.2, noise_sigma: float = 0.1,
         missing_prob: float = 0.1) -> gym.Env:
    """Wraps `env` in the wrappers of `kind`, left to right."""
    for part in parse_kind(kind):
        if part == "remove_velocity":
            env = RemoveVelocity(env)
        elif part == "flickering":
            env = Flickering(env, flicker_prob)
        elif part == "random_noise":
            env = RandomNoise(env, noise_sigma)
        else:
            env = RandomSensorMissing(env, missing_prob)
    return env


def make(env_id: str, kind: str, *, flicker_prob: float = 0.2, noise_sigma: float = 0.1,
         missing_prob: float = 0.1, **make_kwargs: Any) -> gym.Env:
    """`gym.make(env_id, **make_kwargs)` made partially observed by `kind`.

    Args:
        env_id: a gymnasium id (`remove_velocity` needs one in `VELOCITY_FREE`).
        kind: one of `KINDS`, or two joined by `_and_`.
        flicker_prob: probability that a whole observation is zeroed.
        noise_sigma: standard deviation of the added Gaussian noise.
        missing_prob: probability that one entry is zeroed.
        **make_kwargs: passed to `gym.make` (e.g. `max_episode_steps`).
    """
    parse_kind(kind)  # a bad kind fails before the task is built
    if "remove_velocity" in kind.split("_and_") and env_id not in VELOCITY_FREE:
        raise ValueError(f"remove_velocity does not know which entries of {env_id!r} are velocities; "
                         f"known tasks: {', '.join(VELOCITY_FREE)}.")
    return wrap(gym.make(env_id, **make_kwargs), kind, flicker_prob=flicker_prob, noise_sigma=noise_sigma,
                missing_prob=missing_prob)
