"""Replay storage: circular numpy arrays of transitions, uniform or prioritized,
with one-step, n-step or whole-episode returns."""

from __future__ import annotations

import json
import os
from typing import Any

import numba
import numpy as np

from kerasrl import schedules

FIELDS = ("observation", "action", "reward", "next_observation", "terminated")


def _check_rewards(reward: np.ndarray) -> None:
    if not np.all(np.isfinite(reward)):
        raise ValueError(
            f"Non-finite reward {reward} given to the replay buffer; "
            "check the environment (a NaN or inf reward would poison every target)."
        )


class ReplayBuffer:
    """A circular buffer of `(observation, action, reward, next_observation, terminated)`.

    Gymnasium semantics: `terminated` marks a true end of the episode (no
    bootstrapping); a truncated episode (time limit) is stored with
    `terminated=False` and its true final observation as `next_observation`,
    so targets bootstrap through it.

    n-step returns: with `n_step=n` each stored transition holds
    `reward = sum_{k<m} gamma^k r_{t+k}`, `next_observation = s_{t+m}` and
    `discount = gamma^m`, where `m = n` or fewer when the episode ended
    (terminated or truncated) first; `terminated` is set only if it ended by
    termination. Targets are then `reward + discount * (1 - terminated) * V(s')`.
    `n_step="episode"` rates the entire episode: each step's discounted return
    to the end of its episode (the Monte-Carlo return, bootstrapped from the
    final observation only after a truncation). A transition is stored once its
    window is complete, so the newest `n - 1` steps of each environment (the
    whole running episode in "episode" mode) are not yet sampleable.

    Storage is allocated on the first `add`, with the shapes and dtypes of that
    transition; later transitions must match.

    Histories: with `history_length=L`, every sampled transition also carries
    the L observations and actions before t (`history_observation`,
    `history_action`, oldest first) and before t+1 (`next_history_*`, the
    same window moved on by one step, so it ends with the observation and
    action at t), each with a `*_mask` that is True on the steps that exist.
    A history stops at its episode's start and never crosses into another
    episode or another environment copy; the missing steps are zeros at the
    front of the window (masked out), and the first step of an episode has an
    empty history. Each transition is stored once, with a link to the previous
    step of its episode; the windows are gathered from the links at sampling
    time, L vectorised lookups per batch. Steps whose predecessors were
    overwritten shorten the history. With n-step returns (`n_step=n`), the
    steps go into a ring of their own as they arrive (an n-step transition is
    stored only once its window is complete), each transition holds the ids of
    its first and last step, and the next history is the window before
    t+m, where `next_observation = s_{t+m}`: it ends with the steps t..t+m-1.

    Args:
        capacity: the most transitions kept; the oldest are overwritten.
        n_step: steps summed into each reward (1), or "episode".
        gamma: discount of the n-step sums; `EnvDataset` sets the agent's
            gamma when left None.
        seed: seed of the sampling generator.
        history_length: past steps given with each transition (0: none);
            not with `n_step="episode"`.

    Example:

    ```python
    buffer = kerasrl.ReplayBuffer(100_000)
    buffer.add(obs, action, reward, next_obs, terminated)      # one transition
    buffer.add(obs_batch, act_batch, rewards, next_batch, terms)  # or a batch
    batch, indices = buffer.sample(256)
    buffer.save("buffer.npz"); buffer.load("buffer.npz")

    with_history = kerasrl.ReplayBuffer(100_000, history_length=5)
    ```
    """

    prioritized = False

    def __init__(self, capacity: int, n_step: int | str = 1, gamma: float | None = None, seed: int | None = None,
                 history_length: int = 0):
        if int(capacity) <= 0:
            raise ValueError(f"{type(self).__name__} capacity must be positive, got {capacity}.")
        if n_step != "episode" and (isinstance(n_step, str) or int(n_step) < 1):
            raise ValueError(f"n_step must be a positive integer or 'episode', got {n_step!r}.")
        if int(history_length) < 0:
            raise ValueError(f"history_length must be >= 0, got {history_length}.")
        if int(history_length) and n_step == "episode":
            raise ValueError(f"history_length={history_length} needs a whole number n_step (histories of "
                             "whole-episode returns are not supported).")
        self.history_length = int(history_length)
        self.capacity = int(capacity)
        self.n_step = n_step if n_step == "episode" else int(n_step)
        self.gamma = None if gamma is None else float(gamma)
        self.rng = np.random.default_rng(seed)
        self.storage: dict[str, np.ndarray] | None = None
        self.position = 0  # where the next transition goes
        self.size = 0
        self.num_added = 0  # transitions ever stored; the step of the buffer's schedules
        self._spec: dict[str, tuple] | None = None  # per-transition (shape, dtype) of each field
        self._windows: dict[int, list] = {}  # n-step: each environment's pending steps
        self._last: dict[int, int] = {}  # histories: env id -> id of its running episode's newest step
        # n-step histories: every step's observation, action and link, as it arrives.
        self._steps: dict[str, np.ndarray] | None = None
        self.steps_added = 0

    def __len__(self) -> int:
        return self.size

    @property
    def fields(self) -> tuple[str, ...]:
        """Names of the stored arrays."""
        links = (("prev",) if self.n_step == 1 else ("step", "last_step")) if self.history_length else ()
        return FIELDS + (("discount",) if self.n_step != 1 else ()) + links

    @property
    def extra_fields(self) -> tuple[str, ...]:
        """Per-transition float32 fields a batch carries besides FIELDS."""
        return ("discount",) if self.n_step != 1 else ()

    @property
    def nbytes(self) -> int:
        """Memory held by the stored arrays, in bytes."""
        return sum(a.nbytes for a in self.storage.values()) if self.storage else 0

    # ------------------------------------------------------------------ adding
    def add(self, observation, action, reward, next_observation, terminated,
            truncated=None, env_ids=None) -> None:
        """Stores one transition, or a batch of them (leading axis = batch).

        Args:
            truncated: the episode ended by a time limit here (n-step returns
                stop at it and bootstrap from `next_observation`).
            env_ids: which environment each row comes from (n-step windows
                are kept per environment); `range(batch)` by default.
        """
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
        _check_rewards(transition["reward"])
        if self._spec is None:
            self._spec = {name: (value.shape[1:], value.dtype) for name, value in transition.items()}
        for name, value in transition.items():
            shape = self._spec[name][0]
            if value.shape != (n,) + shape:
                raise ValueError(
                    f"Replay buffer {name} has shape {value.shape[1:]} per transition, "
                    f"expected {shape} (batch of {n})."
                )
        truncated = np.zeros(n, bool) if truncated is None else np.asarray(truncated, bool).reshape(n)
        env_ids = np.arange(n) if env_ids is None else np.asarray(env_ids).reshape(n)
        if self.n_step == 1:
            if self.history_length:
                transition["prev"] = self._links(self.num_added + np.arange(n), transition["terminated"] > 0,
                                                 truncated, env_ids)
            self._store(transition)
            return
        if self.gamma is None:
            raise ValueError("An n-step replay buffer needs gamma (EnvDataset sets the agent's).")
        step_ids = self._add_steps(transition, truncated, env_ids) if self.history_length else [None] * n
        ready = []  # (window, count, next_observation, terminated): the first `count` steps are complete
        for row in range(n):
            window = self._windows.setdefault(int(env_ids[row]), [])
            window.append((np.array(transition["observation"][row]), np.array(transition["action"][row]),
                           float(transition["reward"][row]), step_ids[row]))
            if transition["terminated"][row] or truncated[row]:
                ready.append((list(window), len(window), transition["next_observation"][row],
                              transition["terminated"][row]))
                window.clear()
            elif self.n_step != "episode" and len(window) == self.n_step:
                ready.append((list(window), 1, transition["next_observation"][row], 0.0))
                window.pop(0)
        if ready:
            self._store(self._returns(ready))

    def _links(self, ids: np.ndarray, terminated: np.ndarray, truncated: np.ndarray, env_ids: np.ndarray) -> np.ndarray:
        """The id of the previous step in each row's episode (-1 at an episode's start); rows are steps `ids`."""
        ends = terminated | truncated
        prev = np.empty(len(ids), np.int64)
        for row, step in enumerate(ids):  # one dict lookup per environment copy
            env = int(env_ids[row])
            prev[row] = self._last.pop(env, -1)
            if not ends[row]:
                self._last[env] = int(step)
        return prev

    def _add_steps(self, transition: dict[str, np.ndarray], truncated: np.ndarray, env_ids: np.ndarray) -> np.ndarray:
        """Writes each row's observation and action into the step ring (n-step histories); returns their ids."""
        n = len(truncated)
        if self._steps is None:
            # The steps of every held transition, and per copy its pending window and an oldest transition's history.
            capacity = self.capacity + (self.n_step - 1 + self.history_length) * n
            self._steps = {"observation": np.zeros((capacity,) + self._spec["observation"][0],
                                                   self._spec["observation"][1]),
                           "action": np.zeros((capacity,) + self._spec["action"][0], self._spec["action"][1]),
                           "prev": np.full(capacity, -1, np.int64)}
        ids = self.steps_added + np.arange(n)
        slots = ids % len(self._steps["prev"])
        self._steps["prev"][slots] = self._links(ids, transition["terminated"] > 0, truncated, env_ids)
        self._steps["observation"][slots] = transition["observation"]
        self._steps["action"][slots] = transition["action"]
        self.steps_added += n
        return ids

    def _returns(self, ready: list) -> dict[str, np.ndarray]:
        """The n-step transitions of complete windows: from each of a window's
        first `count` steps, the discounted return to the window's end."""
        rows = {name: [] for name in self.fields}
        for window, count, next_observation, terminated in ready:
            ret, returns = 0.0, []
            for _, _, reward, _ in reversed(window):
                ret = reward + self.gamma * ret
                returns.append(ret)
            returns.reverse()  # returns[i]: from step i to the window's end
            length = len(window)
            for i in range(count):
                rows["observation"].append(window[i][0])
                rows["action"].append(window[i][1])
                rows["reward"].append(returns[i])
                rows["next_observation"].append(next_observation)
                rows["terminated"].append(terminated)
                rows["discount"].append(self.gamma ** (length - i))
                if self.history_length:
                    rows["step"].append(window[i][3])
                    rows["last_step"].append(window[-1][3])
        dtypes = {name: dtype for name, (_, dtype) in self._spec.items()}
        dtypes.update(discount=np.float32, step=np.int64, last_step=np.int64)
        return {name: np.asarray(values, dtype=dtypes[name]) for name, values in rows.items()}

    def _store(self, transition: dict[str, np.ndarray]) -> np.ndarray:
        """Writes ready transitions into the circular storage; returns their indices."""
        if self.storage is None:
            self.storage = {
                name: np.zeros((self.capacity,) + value.shape[1:], dtype=value.dtype)
                for name, value in transition.items()
            }
        n = len(transition["reward"])
        indices = (self.position + np.arange(n)) % self.capacity
        for name, value in transition.items():
            self.storage[name][indices] = value
        self.position = int((self.position + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)
        self.num_added += n
        return indices

    def drop_pending(self) -> None:
        """Forgets the incomplete n-step windows and histories (their episodes were cut short)."""
        self._windows.clear()
        self._last.clear()

    # ---------------------------------------------------------------- sampling
    def _check_sample(self, batch_size: int) -> None:
        if self.size == 0:
            raise ValueError("Cannot sample from an empty replay buffer.")
        if batch_size > self.capacity:
            raise ValueError(
                f"batch_size {batch_size} is larger than the replay buffer's "
                f"capacity {self.capacity}."
            )

    def sample(self, batch_size: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Samples `batch_size` transitions uniformly (with replacement).

        Returns:
            `(batch, indices)`: a dict of arrays keyed by field name, and the
            buffer indices they came from.
        """
        self._check_sample(batch_size)
        indices = self.rng.integers(0, self.size, size=batch_size)
        return self._gather(indices), indices

    def _gather(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """The batch of the transitions at `indices`, with their histories."""
        batch = {name: store[indices] for name, store in self.storage.items()
                 if name not in ("prev", "step", "last_step")}
        if self.history_length:
            batch.update(self._histories(indices, batch["observation"], batch["action"]))
        return batch

    def _ring(self) -> tuple[dict[str, np.ndarray], int]:
        """The steps histories are gathered from (observation, action, prev) and the oldest id still held.

        With 1-step transitions a transition is a step; n-step ones keep their steps in a ring of their own.
        """
        if self.n_step == 1:
            return self.storage, max(self.num_added - self.size, 0)
        return self._steps, max(self.steps_added - len(self._steps["prev"]), 0)

    def _window(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The L steps of each episode up to and including step `ids[i]` (-1: none), oldest first:
        observations, actions and mask (zeros where masked)."""
        steps, oldest_held = self._ring()
        capacity, length = len(steps["prev"]), self.history_length
        slots = np.zeros((len(ids), length), np.int64)
        mask = np.zeros((len(ids), length), bool)
        for k in range(length - 1, -1, -1):  # newest first, following the links
            held = ids >= oldest_held
            mask[:, k] = held
            slots[:, k] = np.where(held, ids % capacity, 0)
            ids = np.where(held, steps["prev"][slots[:, k]], -1)
        obs = steps["observation"][slots]
        act = steps["action"][slots]
        obs[~mask] = 0
        act[~mask] = 0
        return obs, act, mask

    def _histories(self, indices: np.ndarray, observation: np.ndarray, action: np.ndarray) -> dict[str, np.ndarray]:
        """The windows before t and before t+m (`next_observation = s_{t+m}`) of the transitions at `indices`."""
        if self.n_step == 1:
            obs, act, mask = self._window(self.storage["prev"][indices])
            history = {"history_observation": obs, "history_action": act, "history_mask": mask,
                       # the window before t+1 ends with step t itself
                       "next_history_observation": np.concatenate([obs[:, 1:], observation[:, None]], axis=1),
                       "next_history_action": np.concatenate([act[:, 1:], action[:, None]], axis=1),
                       "next_history_mask": np.concatenate([mask[:, 1:], np.ones((len(indices), 1), bool)], axis=1)}
            return history
        steps, oldest_held = self._ring()
        first = self.storage["step"][indices]
        before = np.where(first >= oldest_held, steps["prev"][first % len(steps["prev"])], -1)
        history = dict(zip(("history_observation", "history_action", "history_mask"), self._window(before)))
        history.update(zip(("next_history_observation", "next_history_action", "next_history_mask"),
                           self._window(self.storage["last_step"][indices])))
        return history

    # ------------------------------------------------------------- persistence
    def _extra_arrays(self) -> dict[str, np.ndarray]:
        if self._steps is None:
            return {}
        held = min(self.steps_added, len(self._steps["prev"]))
        return {"steps_added": np.int64(self.steps_added), "step_capacity": np.int64(len(self._steps["prev"])),
                **{f"step_{name}": store[:held] for name, store in self._steps.items()}}

    def _load_extra(self, content: dict[str, np.ndarray], path: str) -> Any:
        """Checks a file's extra arrays; returns a function that applies them."""
        if not (self.history_length and self.n_step != 1):
            return lambda: None
        if not int(content["size"]):
            return lambda: (setattr(self, "_steps", None), setattr(self, "steps_added", 0))
        names = ("steps_added", "step_capacity", "step_observation", "step_action", "step_prev")
        held = min(int(content.get("steps_added", 0)), int(content.get("step_capacity", 0)))
        if any(name not in content for name in names) or any(len(content[n]) != held for n in names[2:]):
            raise ValueError(f"{path!r} holds no valid step ring for its n-step histories; "
                             f"was it saved by a buffer with n_step={self.n_step} and history_length="
                             f"{self.history_length}?")

        def apply() -> None:
            capacity = int(content["step_capacity"])
            self._steps = {}
            for name in ("observation", "action", "prev"):
                stored = content[f"step_{name}"]
                self._steps[name] = np.zeros((capacity,) + stored.shape[1:], stored.dtype)
                self._steps[name][:held] = stored
            self.steps_added = int(content["steps_added"])

        return apply

    def save(self, path: str | os.PathLike) -> None:
        """Writes the buffer's contents and position to an `.npz` file."""
        path = os.fspath(path)
        arrays = {name: store[: self.size] for name, store in (self.storage or {}).items()}
        tmp = path + ".tmp.npz"
        np.savez(tmp, capacity=self.capacity, position=self.position, size=self.size,
                 num_added=self.num_added, rng_state=json.dumps(self.rng.bit_generator.state),
                 **arrays, **self._extra_arrays())
        os.replace(tmp, path)  # never leave a half-written file at `path`

    def load(self, path: str | os.PathLike) -> "ReplayBuffer":
        """Restores contents saved by `save` (capacity and fields must match)."""
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
        arrays = {f: content[f] for f in content if f in FIELDS + ("discount",) + self.fields}
        if arrays and set(arrays) != set(self.fields):
            raise ValueError(f"{path!r} holds the fields {sorted(arrays)}, this buffer (n_step={self.n_step!r}, "
                             f"history_length={self.history_length}) stores {sorted(self.fields)}.")
        if any(len(a) != size for a in arrays.values()) or (size and not arrays):
            raise ValueError(f"{path!r} is damaged: its arrays do not hold the {size} transitions it records.")
        apply_extra = self._load_extra(content, os.fspath(path))
        # Checked first, changed after: a bad file leaves this buffer as it was.
        self.size, self.position = size, position
        self.num_added = int(content.get("num_added", size))
        self.drop_pending()
        if arrays:
            self.storage = {name: np.zeros((self.capacity,) + a.shape[1:], a.dtype) for name, a in arrays.items()}
            self._spec = {name: (a.shape[1:], a.dtype) for name, a in arrays.items() if name in FIELDS}
            for name, value in arrays.items():
                self.storage[name][: self.size] = value
        if "rng_state" in content:
            self.rng.bit_generator.state = json.loads(str(content["rng_state"]))
        apply_extra()
        return self

    def get_config(self) -> dict[str, Any]:
        return {"class_name": type(self).__name__, "capacity": self.capacity,
                "n_step": self.n_step, "gamma": self.gamma, "history_length": self.history_length}


_OPS = {"sum": 0, "min": 1, "max": 2}


@numba.njit(cache=True, nogil=True)
def _tree_update(tree, leaves, indices, values, op):  # pragma: no cover - compiled
    for j in range(indices.shape[0]):
        node = indices[j] + leaves
        tree[node] = values[j]
        node >>= 1
        while node >= 1:
            left, right = tree[2 * node], tree[2 * node + 1]
            tree[node] = left + right if op == 0 else (min(left, right) if op == 1 else max(left, right))
            node >>= 1


@numba.njit(cache=True, nogil=True)
def _tree_find(tree, leaves, prefix):  # pragma: no cover - compiled
    out = np.empty(prefix.shape[0], np.int64)
    for j in range(prefix.shape[0]):
        node, value = 1, prefix[j]
        while node < leaves:
            left = tree[2 * node]
            if value >= left:
                value -= left
                node = 2 * node + 1
            else:
                node = 2 * node
        out[j] = node - leaves
    return out


class SegmentTree:
    """A binary tree over `capacity` leaves whose nodes hold `op` of their children.

    Updates and prefix-sum searches of a whole batch run in one numba-compiled
    loop: ~10 µs per batch of 256 against ~250 µs for the best numpy version
    (one vectorised operation per tree level), measured on a 1M-leaf tree.
    """

    def __init__(self, capacity: int, op: str):
        self.leaves = 1 << max(int(capacity) - 1, 1).bit_length()
        self.op = _OPS[op]
        self.tree = np.full(2 * self.leaves, np.inf if op == "min" else 0.0, dtype=np.float64)

    def __getitem__(self, indices: Any) -> np.ndarray:
        return self.tree[np.asarray(indices) + self.leaves]

    def update(self, indices: np.ndarray, values: np.ndarray) -> None:
        indices = np.ascontiguousarray(indices, dtype=np.int64).reshape(-1)
        values = np.asarray(values, dtype=np.float64)
        if values.shape != indices.shape:
            values = np.broadcast_to(values, indices.shape)
        _tree_update(self.tree, self.leaves, indices, np.ascontiguousarray(values), self.op)

    @property
    def root(self) -> float:
        return float(self.tree[1])

    def find_prefix_sum(self, prefix: np.ndarray) -> np.ndarray:
        """Per value v: the leaf i with sum(leaves[:i]) <= v < sum(leaves[:i + 1])."""
        return _tree_find(self.tree, self.leaves, np.ascontiguousarray(prefix, dtype=np.float64))


class GeneticPriority:
    """Genetic SAC's priority rule: favour transitions the critics predict well.

    `priority = clip((|delta| + epsilon) ** -power, min_priority, max_priority)`;
    new transitions get `max_priority`; the loss weights are
    `(p / max p) ** w`, with `w` a schedule of stored transitions rising to 1.

    Example:

    ```python
    buffer = kerasrl.PrioritizedReplayBuffer(100_000, priority=kerasrl.GeneticPriority(power=0.6))
    ```
    """

    name = "genetic"
    tree = "max"

    def __init__(self, power: float = 0.6, epsilon: float = 0.01, min_priority: float = 0.1,
                 max_priority: float = 1.0, weight_power: Any = schedules.Linear(0.4, 1.0, 200_000)):
        if not 0 < min_priority <= max_priority:
            raise ValueError(f"GeneticPriority needs 0 < min_priority <= max_priority, got "
                             f"{min_priority}, {max_priority}.")
        self.power, self.epsilon = float(power), float(epsilon)
        self.min_priority, self.max_priority = float(min_priority), float(max_priority)
        self.weight_power = schedules.get(weight_power)

    def priority(self, td_abs: np.ndarray, buffer: "PrioritizedReplayBuffer") -> np.ndarray:
        return np.clip((td_abs + self.epsilon) ** -self.power, self.min_priority, self.max_priority)

    def new_priority(self, buffer: "PrioritizedReplayBuffer") -> float:
        return self.max_priority

    def weights(self, priorities: np.ndarray, buffer: "PrioritizedReplayBuffer") -> np.ndarray:
        w = self.weight_power(buffer.num_added)
        return (priorities / buffer.extreme_tree.root) ** w

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "power": self.power, "epsilon": self.epsilon,
                "min_priority": self.min_priority, "max_priority": self.max_priority,
                "weight_power": schedules.serialize(self.weight_power)}


class ProportionalPriority:
    """Proportional prioritization (Schaul et al. 2016): `p = (|delta| + epsilon) ** alpha`.

    New transitions get the largest priority seen so far; importance-sampling
    weights `(N P(i)) ** -beta` are divided by the largest possible weight, so
    they are `(p_i / min p) ** -beta`.
    """

    name = "proportional"
    tree = "min"

    def __init__(self, alpha: float = 0.6, beta: Any = 0.4, epsilon: float = 1e-6):
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}.")
        self.alpha, self.epsilon = float(alpha), float(epsilon)
        self.beta = schedules.get(beta)

    def priority(self, td_abs: np.ndarray, buffer: "PrioritizedReplayBuffer") -> np.ndarray:
        raw = td_abs + self.epsilon
        buffer.max_seen = max(buffer.max_seen, float(np.max(raw)))
        return raw ** self.alpha

    def new_priority(self, buffer: "PrioritizedReplayBuffer") -> float:
        return buffer.max_seen ** self.alpha

    def weights(self, priorities: np.ndarray, buffer: "PrioritizedReplayBuffer") -> np.ndarray:
        beta = self.beta(buffer.num_added)
        return (priorities / buffer.extreme_tree.root) ** -beta


class PrioritizedReplayBuffer(ReplayBuffer):
    """A replay buffer sampling transitions in proportion to their priority.

    Sampling is stratified (one draw per equal slice of the total priority) on
    a sum tree; a min tree (proportional rule) or max tree (genetic rule)
    normalises the loss weights, which batches carry as `weight`. Priorities
    are refreshed from the agents' TD errors after every update by
    `kerasrl.callbacks.PriorityRefresh` (added by `fit` when missing).

    Args:
        capacity: the most transitions kept.
        alpha: how strongly priorities skew sampling (0 = uniform).
        beta: importance-sampling exponent, a number or a schedule of stored
            transitions (e.g. `schedules.Linear(0.4, 1.0, 100_000)`).
        epsilon: added to |delta| so no transition has zero priority.
        priority: "proportional" (the above), "genetic" or a
            `GeneticPriority(...)` (Genetic SAC's rule; alpha, beta and
            epsilon then come from it).
        n_step, gamma, seed, history_length: as for `ReplayBuffer`.

    Example:

    ```python
    buffer = kerasrl.PrioritizedReplayBuffer(50_000, alpha=0.6,
                                             beta=schedules.Linear(0.4, 1.0, 100_000))
    data = kerasrl.EnvDataset(env, agent, buffer=buffer, batch_size=128)
    agent.fit(data, callbacks=[kerasrl.callbacks.PriorityRefresh()])
    ```
    """

    prioritized = True

    def __init__(self, capacity: int, alpha: float = 0.6, beta: Any = 0.4, epsilon: float = 1e-6,
                 priority: str | GeneticPriority | dict = "proportional", n_step: int | str = 1,
                 gamma: float | None = None, seed: int | None = None, history_length: int = 0):
        super().__init__(capacity, n_step=n_step, gamma=gamma, seed=seed, history_length=history_length)
        if isinstance(priority, dict):
            priority = GeneticPriority(**{k: v for k, v in priority.items() if k != "name"})
        if priority == "genetic":
            priority = GeneticPriority()
        elif priority == "proportional":
            priority = ProportionalPriority(alpha, beta, epsilon)
        if not isinstance(priority, (GeneticPriority, ProportionalPriority)):
            raise ValueError(f"priority must be 'proportional', 'genetic' or a GeneticPriority, got {priority!r}.")
        self.rule = priority
        self.alpha, self.epsilon = float(alpha), float(epsilon)
        self.beta = schedules.get(beta)
        self.max_seen = 1.0  # largest |delta| + epsilon so far (proportional rule)
        self.sum_tree = SegmentTree(self.capacity, "sum")
        self.extreme_tree = SegmentTree(self.capacity, priority.tree)

    @property
    def extra_fields(self) -> tuple[str, ...]:
        return super().extra_fields + ("weight",)

    def _store(self, transition: dict[str, np.ndarray]) -> np.ndarray:
        indices = super()._store(transition)
        self._set(indices, np.full(len(indices), self.rule.new_priority(self)))
        return indices

    def _set(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        self.sum_tree.update(indices, priorities)
        self.extreme_tree.update(indices, priorities)

    def sample(self, batch_size: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Samples in proportion to priority; the batch carries IS `weight`s."""
        self._check_sample(batch_size)
        total = self.sum_tree.root
        prefix = (np.arange(batch_size) + self.rng.random(batch_size)) * (total / batch_size)
        indices = self.sum_tree.find_prefix_sum(np.minimum(prefix, np.nextafter(total, 0)))
        indices = np.minimum(indices, self.size - 1)  # float round-off past the last filled leaf
        batch = self._gather(indices)
        batch["weight"] = self.rule.weights(self.sum_tree[indices], self).astype(np.float32)
        return batch, indices

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """Sets the priorities of sampled transitions from their TD errors."""
        td_abs = np.abs(np.asarray(td_errors, dtype=np.float64)).reshape(-1)
        if not np.all(np.isfinite(td_abs)):
            raise ValueError("Non-finite TD errors given to update_priorities; the update diverged.")
        self._set(np.asarray(indices, dtype=np.int64).reshape(-1), self.rule.priority(td_abs, self))

    def priorities(self) -> np.ndarray:
        """The stored transitions' priorities (tree leaves)."""
        return self.sum_tree[np.arange(self.size)]

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        return {**super()._extra_arrays(), "priorities": self.priorities(), "max_seen": np.float64(self.max_seen)}

    def _load_extra(self, content: dict[str, np.ndarray], path: str) -> Any:
        apply_steps = super()._load_extra(content, path)
        priorities = content.get("priorities")
        size = int(content["size"])
        if priorities is None or len(priorities) != size or not np.all(np.isfinite(priorities)):
            raise ValueError(f"{path!r} holds no valid priorities for its {size} transitions; "
                             "was it saved by a PrioritizedReplayBuffer?")

        def apply() -> None:
            apply_steps()
            self.sum_tree = SegmentTree(self.capacity, "sum")
            self.extreme_tree = SegmentTree(self.capacity, self.rule.tree)
            self._set(np.arange(size), priorities)
            self.max_seen = float(content.get("max_seen", 1.0))

        return apply

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(alpha=self.alpha, beta=schedules.serialize(self.beta), epsilon=self.epsilon,
                      priority=self.rule.get_config() if isinstance(self.rule, GeneticPriority) else "proportional")
        return config


class FrameStackReplayBuffer(ReplayBuffer):
    """A replay buffer for stacked-frame observations that stores each frame once.

    Observations are stacks `(k, H, W)` of the last k frames (as
    `kerasrl.envs.make_atari` gives). Instead of two stacks per transition
    (2k frames), the buffer keeps only the newest frame of each observation
    and a link to the previous transition of the same episode and
    environment; a sampled stack is rebuilt from the links. The next
    observation is the following transition's stack, or, at an episode's end,
    the stack shifted by its final frame. Episode-start stacks whose frames
    differ (anything but gymnasium's reset padding) are kept whole on the
    side. 1M transitions of 84x84 frames take ~7.1 GB.

    The newest transition of each running episode becomes sampleable once its
    successor arrives. A stack whose oldest frames were overwritten repeats
    the oldest frame still held. Only `n_step=1`.

    Example:

    ```python
    env = kerasrl.envs.make_atari("BreakoutNoFrameskip-v4", n_envs=4)
    buffer = kerasrl.FrameStackReplayBuffer(1_000_000)
    ```
    """

    def __init__(self, capacity: int, n_step: int = 1, gamma: float | None = None, seed: int | None = None,
                 history_length: int = 0):
        if n_step != 1 or history_length:
            raise ValueError("FrameStackReplayBuffer supports n_step=1 and history_length=0 only.")
        super().__init__(capacity, n_step=1, gamma=gamma, seed=seed)
        self._last: dict[int, int] = {}  # env id -> id of its running episode's newest transition
        self.final_frames: dict[int, np.ndarray] = {}  # transition id -> final frame of its episode
        self.head_stacks: dict[int, np.ndarray] = {}  # transition id -> whole first stack of an episode

    @property
    def fields(self) -> tuple[str, ...]:
        return ("frame", "action", "reward", "terminated", "id", "prev", "next", "ended")

    def add(self, observation, action, reward, next_observation, terminated,
            truncated=None, env_ids=None) -> None:
        """Stores one transition or a batch; `env_ids` tells the environments apart."""
        obs, next_obs = np.asarray(observation), np.asarray(next_observation)
        reward = np.asarray(reward, dtype=np.float32)
        if reward.ndim == 0:
            obs, next_obs, reward = obs[None], next_obs[None], reward[None]
            action, terminated = np.asarray(action)[None], np.asarray(terminated)[None]
            truncated = None if truncated is None else np.asarray(truncated)[None]
        n = len(reward)
        action = np.asarray(action)
        terminated = np.asarray(terminated, bool).reshape(n)
        truncated = np.zeros(n, bool) if truncated is None else np.asarray(truncated, bool).reshape(n)
        env_ids = np.arange(n) if env_ids is None else np.asarray(env_ids).reshape(n)
        if obs.ndim != 4 or obs.shape != next_obs.shape or len(obs) != n:
            raise ValueError(f"FrameStackReplayBuffer needs observations of shape (batch, k, H, W), got "
                             f"{obs.shape} and next {next_obs.shape}.")
        _check_rewards(reward)
        if self._spec is None:
            self._spec = {"observation": (obs.shape[1:], obs.dtype), "action": (action.shape[1:], action.dtype)}
        if obs.shape[1:] != self._spec["observation"][0] or action.shape[1:] != self._spec["action"][0]:
            raise ValueError(f"Replay buffer observation/action shapes {obs.shape[1:]}/{action.shape[1:]} differ "
                             f"from the stored {self._spec['observation'][0]}/{self._spec['action'][0]}.")
        if self.storage is None:
            k, h, w = obs.shape[1:]
            c = self.capacity
            self.storage = {
                "frame": np.zeros((c, h, w), obs.dtype), "action": np.zeros((c,) + action.shape[1:], action.dtype),
                "reward": np.zeros(c, np.float32), "terminated": np.zeros(c, np.float32),
                "id": np.full(c, -1, np.int64), "prev": np.full(c, -1, np.int64),
                "next": np.full(c, -1, np.int64), "ended": np.zeros(c, bool),
            }
        s = self.storage
        for row in range(n):
            slot, new_id = self.position, self.num_added
            if slot < self.size:  # overwriting the oldest transition: drop what only it used
                self.final_frames.pop(int(s["id"][slot]), None)
                self.head_stacks.pop(int(s["id"][slot]), None)
            env = int(env_ids[row])
            last = self._last.pop(env, None)
            if last is not None and self._alive(last):
                s["next"][last % self.capacity] = new_id
            else:
                last = -1
                if np.any(obs[row] != obs[row, -1]):  # not the reset padding: keep the stack
                    self.head_stacks[new_id] = np.array(obs[row])
            s["frame"][slot] = obs[row, -1]
            s["action"][slot] = action[row]
            s["reward"][slot] = reward[row]
            s["terminated"][slot] = terminated[row]
            s["id"][slot], s["prev"][slot], s["next"][slot] = new_id, last, -1
            s["ended"][slot] = terminated[row] or truncated[row]
            if s["ended"][slot]:
                self.final_frames[new_id] = np.array(next_obs[row, -1])
            else:
                self._last[env] = new_id
            self.position = (slot + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)
            self.num_added += 1

    def _alive(self, transition_id: np.ndarray | int) -> np.ndarray | bool:
        return (transition_id >= 0) & (transition_id >= self.num_added - self.size)

    def drop_pending(self) -> None:
        self._last.clear()  # the episodes restart: no successor will link to them

    def _stacks(self, slots: np.ndarray) -> np.ndarray:
        """The observation stacks of the transitions in `slots`."""
        s, k = self.storage, self._spec["observation"][0][0]
        columns = [slots]
        for _ in range(k - 1):
            prev = s["prev"][columns[0]]
            columns.insert(0, np.where(self._alive(prev), prev % self.capacity, columns[0]))
        stacks = s["frame"][np.stack(columns, axis=1)]
        if self.head_stacks:
            for row in range(len(slots)):
                # Rows whose chain reached an episode start kept whole: take its older frames.
                start = columns[0][row]
                head = self.head_stacks.get(int(s["id"][start]))
                if head is not None:
                    depth = int(np.sum([c[row] != start for c in columns]))  # steps after the start
                    stacks[row, : k - 1 - depth] = head[depth: k - 1]
        return stacks

    def sample(self, batch_size: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Samples transitions whose next observation is known, uniformly."""
        self._check_sample(batch_size)
        s = self.storage
        slots = self.rng.integers(0, self.size, size=batch_size)
        for _ in range(100):  # redraw the few newest transitions still waiting for a successor
            waiting = ~s["ended"][slots] & ~self._alive(s["next"][slots])
            if not waiting.any():
                break
            slots[waiting] = self.rng.integers(0, self.size, size=int(waiting.sum()))
        else:
            raise ValueError("No sampleable transition yet: every stored one still waits for its successor.")
        obs = self._stacks(slots)
        ended = s["ended"][slots]
        next_obs = self._stacks(np.where(ended, slots, s["next"][slots] % self.capacity))
        for row in np.flatnonzero(ended):
            next_obs[row] = np.concatenate([obs[row, 1:], self.final_frames[int(s["id"][slots[row]])][None]])
        batch = {"observation": obs, "action": s["action"][slots], "reward": s["reward"][slots],
                 "next_observation": next_obs, "terminated": s["terminated"][slots]}
        return batch, slots

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        frame_shape = self.storage["frame"].shape[1:] if self.storage else (0, 0)
        k = self._spec["observation"][0][0] if self._spec else 0
        return {
            "final_ids": np.fromiter(self.final_frames, np.int64, len(self.final_frames)),
            "final_frames": np.array(list(self.final_frames.values())).reshape((-1,) + frame_shape),
            "head_ids": np.fromiter(self.head_stacks, np.int64, len(self.head_stacks)),
            "head_stacks": np.array(list(self.head_stacks.values())).reshape((-1, k) + frame_shape),
            "frame_stack": np.int64(k),
        }

    def _load_extra(self, content: dict[str, np.ndarray], path: str) -> Any:
        if "frame_stack" not in content or len(content["final_ids"]) != len(content["final_frames"]):
            raise ValueError(f"{path!r} was not saved by a FrameStackReplayBuffer, or is damaged.")

        def apply() -> None:
            self.final_frames = dict(zip(content["final_ids"].tolist(), content["final_frames"]))
            self.head_stacks = dict(zip(content["head_ids"].tolist(), content["head_stacks"]))
            self._last.clear()
            if self.storage is not None:
                frames = self.storage["frame"]
                k = int(content["frame_stack"])
                self._spec = {"observation": ((k,) + frames.shape[1:], frames.dtype),
                              "action": (self.storage["action"].shape[1:], self.storage["action"].dtype)}

        return apply
