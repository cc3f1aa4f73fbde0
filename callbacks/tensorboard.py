"""TensorBoard logging that keeps a long run's memory flat."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np


def _numpy_scalars(logs: Any) -> Any:
    """`logs` with its Python numbers as float32 numpy scalars, which TensorFlow does not cache."""
    if not isinstance(logs, dict):
        return logs
    return {name: np.float32(value) if isinstance(value, (int, float)) else value for name, value in logs.items()}


class TensorBoard(keras.callbacks.TensorBoard):
    """`keras.callbacks.TensorBoard` without its memory growth: same arguments, same event files.

    TensorFlow keeps the eager tensor of every Python int and float it converts
    (`np.float64` too, a float subclass) in a process-wide cache that is never
    trimmed, ~0.7 KB per distinct value. Keras' callback calls
    `tf.summary.scalar` for every log after every batch, even at
    `update_freq="epoch"` when nothing is written, so each batch leaves its
    step and its metric values there: ~0.4 MiB per 1,000 DQN updates at
    `steps_per_execution=10` (`benchmarks/memory.py`). This subclass skips
    those calls at `update_freq="epoch"` and passes numpy scalars otherwise.
    The `kerasrl train` command uses it.

    Example:

    ```python
    agent.fit(data, epochs=200, callbacks=[kerasrl.callbacks.TensorBoard("runs/tb")])
    ```
    """

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        self._global_train_batch = np.int64(self._global_train_batch)  # the step of update_freq=N scalars

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        # At update_freq="epoch" Keras' batch scalars go to no writer: without logs it skips them.
        super().on_train_batch_end(batch, None if self.update_freq == "epoch" else _numpy_scalars(logs))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        super().on_epoch_end(np.int64(epoch), _numpy_scalars(logs))
