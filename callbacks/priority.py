"""Priority refresh for prioritized replay."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np


class PriorityRefresh(keras.callbacks.Callback):
    """Writes each batch's new priorities into the prioritized replay buffer.

    The agent's train step returns the per-sample |TD error| of every update;
    this callback connects it to the buffer, which turns it into priorities
    (proportional or genetic). The write runs inside the compiled step, right
    after each update, so it is exact for any `steps_per_execution`. With
    `prefetch`, the next batch may be drawn before the current one's
    priorities land, as in distributed prioritized replay (Ape-X).

    `Agent.fit` adds it when the EnvDataset's buffer is prioritized and no
    PriorityRefresh was given.

    Example:

    ```python
    agent.fit(data, callbacks=[kerasrl.callbacks.PriorityRefresh()])
    ```
    """

    def on_train_begin(self, logs: Any = None) -> None:
        dataset = getattr(self.model, "env_dataset", None)
        if dataset is None or not getattr(dataset.buffer, "prioritized", False):
            raise ValueError("PriorityRefresh needs fit over an EnvDataset whose buffer is a "
                             "PrioritizedReplayBuffer.")

        def write(indices: np.ndarray, td_errors: np.ndarray) -> None:
            with dataset.lock:  # the collector adds to the same trees
                try:
                    dataset.buffer.update_priorities(indices, td_errors)
                except ValueError as error:
                    dataset.error = error  # fit re-raises it as it is
                    raise

        self.model._priority_writer = write

    def on_train_end(self, logs: Any = None) -> None:
        self.model._priority_writer = None
