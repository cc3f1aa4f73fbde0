"""Replay storage: circular numpy arrays of transitions."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

FIELDS = ("observation", "action", "reward", "next_observation", "terminated")


class ReplayBuffer:
    """A circular buffer of `(observation, action, reward, next_observation, terminated)`.

    Gymnasium semantics: `terminated` marks a true end of the episode (no
    bootstrapping); a truncated episode (time limit) is stored with
    `terminated=False` and its true final observation as `next_observation`,
    so targets bootstrap through it.

    Storage is allocated on the first `add`, with the shapes and dtypes of that
    transition; later transitions must match.

    Args:
        capacity: the most transitions kept; the oldest are overwritten.
        seed: seed of the sampling generator.

    Example:

    ```python
    buffer = kerasrl.ReplayBuffer(100_000)
    buffer.add(obs, action, reward, next_obs, terminated)      # one transition
    buffer.add(obs_batch, act_batch, rewards, next_batch, terms)  # or a batch
    batch, indices = buffer.sample(256)
    buffer.save("buffer.npz"); buffer.load("buffer.npz")
    ```
    """

    def __init__(self, capacity: int, seed: int | None = None):
        if int(capacity) <= 0:
            raise ValueError(f"ReplayBuffer capacity must be positive, got {capacity}.")
        self.capacity = int(capacity)
        self.rng = np.random.default_rng(seed)
        self.storage: dict[str, np.ndarray] | None = None
        self.position = 0  # where the next transition goes
        self.size = 0

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        """Memory held by the stored arrays, in bytes."""
        return sum(a.nbytes for a in self.storage.values()) if self.storage else 0

    def _allocate(self, transition: dict[str, np.ndarray]) -> None:
        self.storage = {
            name: np.zeros((self.capacity,) + value.shape[1:], dtype=value.dtype)
            for name, value in transition.items()
        }

    def add(self, observation, action, reward, next_observation, terminated) -> None:
        """Stores one transition, or a batch of them (leading axis = batch)."""
        reward = np.asarray(reward, dtype=np.float32)
        single = reward.ndim == 0
        transition = {
            "observation": np.asarray(observation),
            "action": np.asarray(action),
            "reward": reward,
            "next_observation": np.asarray(next_observation),
            "terminated": np.asarray(terminated, dtype=np.float32),
        }
        if single:
            transition = {k: v[None] for k, v in transition.items()}
        n = len(transition["reward"])
        if not np.all(np.isfinite(transition["reward"])):
            raise ValueError(
                f"Non-finite reward {transition['reward']} given to the replay buffer; "
                "check the environment (a NaN or inf reward would poison every target)."
            )
        if self.storage is None:
            self._allocate(transition)
        for name, value in transition.items():
            store = self.storage[name]
            if value.shape != (n,) + store.shape[1:]:
                raise ValueError(
                    f"Replay buffer {name} has shape {value.shape[1:]} per transition, "
                    f"expected {store.shape[1:]} (batch of {n})."
                )
        indices = (self.position + np.arange(n)) % self.capacity
        for name, value in transition.items():
            self.storage[name][indices] = value
        self.position = int((self.position + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Samples `batch_size` transitions uniformly (with replacement).

        Returns:
            `(batch, indices)`: a dict of arrays keyed by field name, and the
            buffer indices they came from.
        """
        if self.size == 0:
            raise ValueError("Cannot sample from an empty replay buffer.")
        if batch_size > self.capacity:
            raise ValueError(
                f"batch_size {batch_size} is larger than the replay buffer's "
                f"capacity {self.capacity}."
            )
        indices = self.rng.integers(0, self.size, size=batch_size)
        return {name: store[indices] for name, store in self.storage.items()}, indices

    def save(self, path: str | os.PathLike) -> None:
        """Writes the buffer's contents and position to an `.npz` file."""
        path = os.fspath(path)
        arrays = {name: store[: self.size] for name, store in (self.storage or {}).items()}
        tmp = path + ".tmp.npz"
        np.savez(tmp, capacity=self.capacity, position=self.position, size=self.size,
                 rng_state=json.dumps(self.rng.bit_generator.state),
                 **arrays)
        os.replace(tmp, path)  # never leave a half-written file at `path`

    def load(self, path: str | os.PathLike) -> "ReplayBuffer":
        """Restores contents saved by `save` (capacity must match)."""
        try:
            with np.load(os.fspath(path)) as data:
                content = {key: data[key] for key in data.files}
        except Exception as error:  # zipfile/OSError/ValueError on a damaged file
            raise ValueError(f"Could not read replay buffer file {path!r}: {error}") from error
        missing = [f for f in ("capacity", "position", "size") if f not in content]
        if missing:
            raise ValueError(f"{path!r} is not a kerasrl replay buffer (missing {missing}).")
        if int(content["capacity"]) != self.capacity:
            raise ValueError(
                f"{path!r} holds a buffer of capacity {int(content['capacity'])}, "
                f"this buffer has {self.capacity}."
            )
        size, position = int(content["size"]), int(content["position"])
        arrays = {f: content[f] for f in content if f not in ("capacity", "position", "size", "rng_state")}
        if any(len(a) != size for a in arrays.values()) or (size and set(arrays) != set(FIELDS)):
            raise ValueError(f"{path!r} is damaged: its arrays do not hold the {size} transitions it records.")
        # Checked first, changed after: a bad file leaves this buffer as it was.
        self.size, self.position = size, position
        if arrays:
            self._allocate({k: v[:1] for k, v in arrays.items()})
            for name, value in arrays.items():
                self.storage[name][: self.size] = value
        if "rng_state" in content:
            self.rng.bit_generator.state = json.loads(str(content["rng_state"]))
        return self

    def get_config(self) -> dict[str, Any]:
        return {"class_name": type(self).__name__, "capacity": self.capacity}
