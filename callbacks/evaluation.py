"""Periodic deterministic evaluation during fit."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import keras
import numpy as np


class EvalCallback(keras.callbacks.Callback):
    """Evaluates the policy after the first epoch of each fit and every `every_epochs` epochs; logs `eval_return`.

    `eval_return` (mean) and `eval_return_std` go into the epoch logs, so
    History, CSVLogger, EarlyStopping(monitor="eval_return", mode="max") and
    keras-tuner objectives see them. Between evaluations the last values are
    repeated, so every epoch row has the same columns. The first epoch is
    always evaluated: EarlyStopping takes the first value it sees as the best,
    and a NaN there would never be beaten (restore_best_weights would bring
    back the first epoch's weights).

    Args:
        env: the evaluation environment (or its id); keep it apart from the
            training environment.
        every_epochs: epochs between evaluations.
        episodes: episodes per evaluation.
        seed: seeds the first reset of every evaluation, so all evaluations
            start from the same states and compare like with like.
        deterministic: use the policy's mode.

    Example:

    ```python
    agent.fit(data, epochs=20, callbacks=[
        kerasrl.callbacks.EvalCallback(gym.make("Pendulum-v1"), episodes=5),
        keras.callbacks.EarlyStopping(monitor="eval_return", mode="max", patience=3)])
    ```
    """

    writes_logs = True  # Agent.fit runs it before Keras' callbacks read the logs

    def __init__(self, env: gym.Env | str, every_epochs: int = 1, episodes: int = 5,
                 seed: int | None = None, deterministic: bool = True):
        super().__init__()
        self.env = gym.make(env) if isinstance(env, str) else env
        self.every_epochs = int(every_epochs)
        self.episodes = int(episodes)
        self.seed = seed
        self.deterministic = deterministic
        self.last = {"eval_return": float("nan"), "eval_return_std": float("nan")}
        self._first_epoch = True

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._first_epoch = True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._first_epoch or (epoch + 1) % self.every_epochs == 0:
            self._first_epoch = False
            returns = self.model.evaluate_env(self.env, episodes=self.episodes, seed=self.seed,
                                              deterministic=self.deterministic)
            self.last = {"eval_return": float(np.mean(returns)), "eval_return_std": float(np.std(returns))}
        if logs is not None:
            logs.update(self.last)


class NaNIsNoBest(keras.callbacks.Callback):
    """Makes a NaN monitored value count as no value for Keras' monitoring callbacks.

    `episode_return` is NaN until an episode has ended (a long episode can
    outlast several epochs). EarlyStopping and ModelCheckpoint(save_best_only)
    take the first value they see as the best, and nothing beats a NaN: they
    would keep the first epoch's weights for good. Run after them, this forgets
    a NaN best, so the first real value becomes the best. `Agent.fit` adds it.
    """

    def __init__(self, watched: list[keras.callbacks.Callback]):
        super().__init__()
        self.watched = [cb for cb in watched if hasattr(cb, "monitor") and hasattr(cb, "best")]

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for callback in self.watched:
            best = callback.best
            if best is not None and np.ndim(best) == 0 and np.isnan(float(best)):
                callback.best = None
