"""Checks and (de)serialisation for the gymnasium spaces an agent is built from."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

SUPPORTED = (gym.spaces.Box, gym.spaces.Discrete)


def check_space(space: Any, role: str) -> gym.spaces.Space:
    """Returns `space` if kerasrl supports it, else raises a ValueError naming it."""
    if not isinstance(space, SUPPORTED):
        raise ValueError(
            f"Unsupported {role} space {space!r}: kerasrl agents take gymnasium "
            "Box or Discrete spaces. Flatten or wrap the environment first "
            "(e.g. gymnasium.wrappers.FlattenObservation)."
        )
    if isinstance(space, gym.spaces.Box) and role == "action":
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise ValueError(
                f"Unsupported action space {space!r}: a Box action space needs "
                "finite low and high bounds, since actions are squashed into them."
            )
    return space


def same_spaces(env_space: gym.spaces.Space, agent_space: gym.spaces.Space) -> bool:
    """Whether an environment's space is the one an agent was built for (kind, shape, size)."""
    return type(env_space) is type(agent_space) and env_space.shape == agent_space.shape and (
        not isinstance(env_space, gym.spaces.Discrete) or env_space.n == agent_space.n)


def flat_dim(space: gym.spaces.Space) -> int:
    """Size of the network input or output for a space (one-hot for Discrete)."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    return int(np.prod(space.shape))


def observation_dtype(space: gym.spaces.Space) -> np.dtype:
    """The dtype observations of `space` are stored and fed in: Discrete indices as int64."""
    return np.dtype(np.int64) if isinstance(space, gym.spaces.Discrete) else np.dtype(space.dtype)


def space_to_config(space: gym.spaces.Space) -> dict:
    if isinstance(space, gym.spaces.Discrete):
        return {"class_name": "Discrete", "n": int(space.n), "start": int(space.start)}
    low, high = space.low, space.high
    # Uniform bounds (e.g. image observations) are stored as one number.
    pack = lambda a: a.flat[0].item() if a.size and np.all(a == a.flat[0]) else a.tolist()
    return {
        "class_name": "Box",
        "low": pack(low),
        "high": pack(high),
        "shape": list(space.shape),
        "dtype": np.dtype(space.dtype).name,
    }


def space_from_config(config: dict) -> gym.spaces.Space:
    if config["class_name"] == "Discrete":
        return gym.spaces.Discrete(config["n"], start=config.get("start", 0))
    if config["class_name"] == "Box":
        dtype = np.dtype(config["dtype"])
        shape = tuple(config["shape"])
        low = np.broadcast_to(np.asarray(config["low"], dtype=dtype), shape)
        high = np.broadcast_to(np.asarray(config["high"], dtype=dtype), shape)
        return gym.spaces.Box(low, high, shape=shape, dtype=dtype)
    raise ValueError(f"Unknown space config {config!r}")


def check_batch(space: gym.spaces.Space, value: Any, role: str) -> tuple[np.ndarray, bool]:
    """Validates one element of `space` or a batch of them.

    Returns the value as an array with a leading batch axis, and whether the
    input was a single element. Raises a ValueError naming the role, the
    expected shape or dtype and what was given.
    """
    array = np.asarray(value)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise ValueError(
            f"Invalid {role}: expected a numeric array for {space!r}, got dtype "
            f"{array.dtype}."
        )
    if isinstance(space, gym.spaces.Discrete) and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"Invalid {role}: {space!r} takes integers, got dtype {array.dtype}."
        )
    if isinstance(space, gym.spaces.Discrete) and array.size and (
        array.min() < space.start or array.max() >= space.start + space.n
    ):
        # Out of range would index the one-hot table wrongly (negative wraps around).
        raise ValueError(
            f"Invalid {role}: {space!r} takes integers in [{space.start}, "
            f"{space.start + space.n - 1}], got {array.min()}..{array.max()}."
        )
    shape = space.shape
    if array.shape == shape:
        return array[None], True
    if array.ndim == len(shape) + 1 and array.shape[1:] == shape:
        return array, False
    raise ValueError(
        f"Invalid {role} shape {array.shape}: expected {shape} (one {role}) or "
        f"(batch,) + {shape} for {space!r}."
    )


def unit_to_box(space: gym.spaces.Box, unit: np.ndarray) -> np.ndarray:
    """Actions in [-1, 1] (what the networks output) -> the Box's [low, high]."""
    return (space.low + (unit + 1.0) * 0.5 * (space.high - space.low)).astype(space.dtype)


def box_to_unit(space: gym.spaces.Box, action: np.ndarray) -> np.ndarray:
    """Actions in the Box's [low, high] -> [-1, 1], in float32."""
    unit = 2.0 * (np.asarray(action, np.float32) - space.low) / (space.high - space.low) - 1.0
    return unit.astype(np.float32, copy=False)
