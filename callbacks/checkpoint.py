"""Checkpoints of a whole training run, and resuming from them."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from typing import Any

import keras

CHECKPOINT_PREFIX = "ckpt-"
DAMAGED_PREFIX = "damaged-"


class DamagedCheckpointError(ValueError):
    """A checkpoint that cannot be read; `path` names the damaged file (or the folder searched)."""

    def __init__(self, message: str, path: str):
        super().__init__(message)
        self.path = path


class Checkpoint(keras.callbacks.Callback):
    """Saves the agent, its replay buffer and the collector's counters.

    Every `every_steps` environment steps (and when training ends) it writes
    `directory/ckpt-<env_steps>/` holding `agent.keras` (networks, targets,
    optimizer state, counters, schedules), `buffer.npz` (none for a
    RolloutDataset) and `state.json` (the dataset's settings and counters,
    the epoch). A checkpoint is written to
    a temporary folder and renamed, so an interruption never leaves a broken
    one; the newest `keep` are kept. `kerasrl.resume(directory, env)` continues
    from the newest.

    Example:

    ```python
    agent.fit(data, epochs=20, callbacks=[kerasrl.callbacks.Checkpoint("runs/ckpt", every_steps=5000)])
    agent, data = kerasrl.resume("runs/ckpt", gym.make("Pendulum-v1"))
    agent.fit(data, epochs=20, initial_epoch=data.initial_epoch)
    ```
    """

    def __init__(self, directory: str | os.PathLike, every_steps: int = 10_000, keep: int = 3,
                 save_buffer: bool = True):
        super().__init__()
        if int(every_steps) < 1 or int(keep) < 1:
            raise ValueError(f"Checkpoint needs every_steps >= 1 and keep >= 1, got {every_steps}, {keep}.")
        self.directory = os.fspath(directory)
        self.every_steps = int(every_steps)
        self.keep = int(keep)
        self.save_buffer = save_buffer
        self._epoch = 0
        self._next = None

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        dataset = self.model.env_dataset
        if dataset is None:
            raise ValueError("Checkpoint needs fit to run on an EnvDataset, a RolloutDataset or an environment.")
        if self._next is None:
            self._next = (dataset.env_steps // self.every_steps + 1) * self.every_steps
        if dataset.env_steps >= self._next:
            self.save(dataset, epoch=self._epoch)
            self._next = (dataset.env_steps // self.every_steps + 1) * self.every_steps

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self._epoch = epoch + 1

    def on_train_end(self, logs: Any = None) -> None:
        dataset = self.model.env_dataset
        if dataset is not None:
            self.save(dataset, epoch=self._epoch)

    def save(self, dataset: Any, epoch: int) -> str:
        """Writes one checkpoint now; returns its folder."""
        os.makedirs(self.directory, exist_ok=True)
        with dataset.lock:  # the collector waits, so buffer and counters agree
            dataset.flush_priorities()  # the buffer as of the last finished update
            steps = dataset.env_steps
            final = os.path.join(self.directory, f"{CHECKPOINT_PREFIX}{steps:010d}")
            tmp = os.path.join(self.directory, f".tmp-{CHECKPOINT_PREFIX}{steps:010d}")
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            self.model.num_env_steps.assign(steps)
            self.model.save(os.path.join(tmp, "agent.keras"))
            if self.save_buffer and getattr(dataset, "buffer", None) is not None:  # rollouts keep no buffer
                dataset.buffer.save(os.path.join(tmp, "buffer.npz"))
            state = {"dataset": dataset.get_config(), "collector": dataset.state(), "epoch": epoch}
            with open(os.path.join(tmp, "state.json"), "w") as f:
                json.dump(state, f)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in _checkpoints(self.directory)[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final


def _checkpoints(directory: str) -> list[str]:
    if not os.path.isdir(directory):
        return []
    names = sorted(n for n in os.listdir(directory) if n.startswith(CHECKPOINT_PREFIX))
    return [os.path.join(directory, n) for n in names]


def latest_checkpoint(directory: str | os.PathLike) -> str:
    """The newest complete checkpoint folder under `directory`."""
    found = _checkpoints(os.fspath(directory))
    if not found:
        raise FileNotFoundError(f"No kerasrl checkpoint under {os.fspath(directory)!r}.")
    return found[-1]


def resume(directory: str | os.PathLike, env: Any = None, **overrides: Any):
    """Continues a run from the newest intact checkpoint in `directory`.

    A checkpoint whose files cannot be read (a truncated `buffer.npz`, a
    damaged `agent.keras` or `state.json`) is skipped: the newest intact one is
    used, and each newer damaged one is moved aside to `damaged-ckpt-<steps>/`
    (kept for inspection, out of the way of later checkpoints) with a warning
    that names the damaged file. Nothing is deleted; if no checkpoint is
    intact, `DamagedCheckpointError` names every damaged file and nothing is
    moved.

    Args:
        directory: the folder given to `Checkpoint`.
        env: the training environment (or id); by default the id recorded in
            the checkpoint. Its episode restarts.
        **overrides: EnvDataset (or RolloutDataset) settings to change (e.g. `prefetch`).

    Returns:
        `(agent, dataset)`: the compiled agent with its networks, optimizer
        state, counters and schedules, and an EnvDataset with the saved buffer
        and counters (a RolloutDataset with its counters, for an on-policy
        agent; it starts a new rollout). `dataset.initial_epoch` is the epoch the checkpoint was
        taken in, `dataset.checkpoint` the folder it came from. The batches
        that were sampled ahead of the updates when it was taken are sampled
        again without collecting, so counters continue exactly as they would
        have.
    """
    found = _checkpoints(os.fspath(directory))
    if not found:
        raise FileNotFoundError(f"No kerasrl checkpoint under {os.fspath(directory)!r}.")
    damaged: list[tuple[str, DamagedCheckpointError]] = []
    for folder in reversed(found):
        try:
            agent, dataset = _load(folder, env, overrides)
        except DamagedCheckpointError as error:
            damaged.append((folder, error))
            continue
        for newer, error in damaged:
            warnings.warn(f"kerasrl.resume: {error}; moved {newer} to {_move_aside(newer)} and resumed from "
                          f"{folder}.", stacklevel=2)
        dataset.checkpoint = folder
        return agent, dataset
    raise DamagedCheckpointError(f"No intact checkpoint under {os.fspath(directory)!r}: "
                                 + "; ".join(str(error) for _, error in damaged), os.fspath(directory))


def _move_aside(folder: str) -> str:
    parent, name = os.path.split(folder)
    aside = os.path.join(parent, DAMAGED_PREFIX + name)
    suffix = 1
    while os.path.exists(aside):
        suffix += 1
        aside = os.path.join(parent, f"{DAMAGED_PREFIX}{name}.{suffix}")
    os.replace(folder, aside)
    return aside


def _read(path: str, reader: Any) -> Any:
    """`reader(path)`, any failure reported as the file being damaged."""
    try:
        return reader(path)
    except Exception as error:  # truncated zip, bad JSON, missing file, ...
        raise DamagedCheckpointError(f"{path} is damaged ({type(error).__name__}: {error})", path) from error


def _read_state(path: str) -> dict:
    with open(path) as f:
        state = json.load(f)
    missing = [key for key in ("dataset", "collector", "epoch") if key not in state]
    if missing:
        raise KeyError(f"no {', '.join(missing)}")
    return state


def _load(folder: str, env: Any, overrides: dict) -> tuple[Any, Any]:
    from kerasrl.data import EnvDataset
    from kerasrl.rollout import RolloutDataset

    state = _read(os.path.join(folder, "state.json"), _read_state)
    agent = _read(os.path.join(folder, "agent.keras"), keras.saving.load_model)
    config = dict(state["dataset"])
    rollout = config.pop("kind", None) == "rollout"
    buffer_config = None if rollout else config.pop("buffer")
    env_id = config.pop("env_id")
    if env is None:
        if env_id is None:
            raise ValueError("This checkpoint recorded no environment id: pass env= to resume.")
        env = env_id
    config.update(overrides)
    config["env"] = env
    if not isinstance(env, str):
        config.pop("n_envs"), config.pop("vectorization_mode")
    if rollout:
        dataset = RolloutDataset(agent=agent, **config)
    else:
        dataset = EnvDataset(agent=agent, buffer=_buffer_from_config(buffer_config), **config)
    buffer_file = os.path.join(folder, "buffer.npz")
    if os.path.exists(buffer_file):  # after EnvDataset, which reseeds the buffer's generator
        try:
            _read(buffer_file, dataset.buffer.load)
        except DamagedCheckpointError:
            dataset.close(env=isinstance(env, str))  # an environment made here is closed
            raise
    dataset.set_state(state["collector"])
    dataset.initial_epoch = int(state["epoch"])
    return agent, dataset


def _buffer_from_config(config: dict) -> Any:
    import kerasrl

    config = dict(config)
    cls = getattr(kerasrl, config.pop("class_name"))
    return cls(**config)
