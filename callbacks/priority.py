"""Priority refresh for prioritized replay."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerasrl.data import MAX_CHUNK
from kerasrl.networks import read_numpy


class TDErrorLog:
    """A ring of the latest updates' (indices, |TD error|), written inside the train step.

    The compiled step only writes a row into a variable, so it never waits for
    Python (no `numpy_function`, no GIL, no lock) and XLA can compile it. The
    collector reads the rows it has not applied yet with one gather before it
    samples. Each row is `[step, indices..., td_errors...]` in float64 in one
    variable, so a read of a row is never torn; the step column tells which
    rows are written, because the variable writes of a compiled step may land
    in any order.
    """

    def __init__(self, batch_size: int, rows: int):
        self.batch_size, self.rows = int(batch_size), int(rows)
        self.ring = tf.Variable(tf.fill([self.rows, 1 + 2 * self.batch_size], tf.constant(-1.0, tf.float64)),
                                trainable=False, name="td_error_log")
        self.applied = None  # the next step to apply; set by `start`

    def record(self, step: Any, indices: Any, td_errors: Any) -> None:
        """Graph side: one row for gradient step `step`."""
        row = tf.concat([tf.reshape(tf.cast(step, tf.float64), [1]),
                         tf.cast(tf.reshape(indices, [-1]), tf.float64),
                         tf.cast(tf.reshape(td_errors, [-1]), tf.float64)], axis=0)
        self.ring.scatter_update(tf.IndexedSlices(row[None], tf.reshape(step % self.rows, [1])))

    def start(self, step: int) -> None:
        self.applied = int(step)

    def drain(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Python side: the rows of steps [applied, step) written so far, oldest first."""
        steps = np.arange(self.applied, int(step))
        if len(steps) == 0:
            return np.zeros(0, np.int64), np.zeros(0)
        steps = steps[-self.rows:]  # older ones were overwritten: their priorities stay stale
        # A bare gather: tf.gather's wrappers cost ~40 µs more, on the collector's critical path.
        rows = tf.raw_ops.ResourceGather(resource=self.ring.handle, indices=steps % self.rows,
                                         dtype=tf.float64).numpy()
        written = rows[:, 0] == steps
        done = len(steps) if written.all() else int(np.argmin(written))  # stop at the first row still in flight
        if done:
            self.applied = int(steps[done - 1]) + 1
        b = self.batch_size
        return rows[:done, 1:1 + b].astype(np.int64).reshape(-1), rows[:done, 1 + b:].reshape(-1)


class PriorityRefresh(keras.callbacks.Callback):
    """Writes each batch's new priorities into the prioritized replay buffer.

    The agent's train step returns the per-sample |TD error| of every update;
    this callback connects it to the buffer, which turns it into priorities
    (proportional or genetic). The compiled step records every update's TD
    errors in a small ring of variables (a few hundred updates deep) and the
    collector applies them to the buffer right before it samples, so every
    batch is drawn with the priorities of all updates that have finished, at
    any `steps_per_execution`, without the update ever waiting for Python.
    Batches prepared ahead (`prefetch`, and the batches of one round of
    `gradient_steps`, which are drawn together) do not see the priorities of
    the updates still running, as in distributed prioritized replay (Ape-X).

    `Agent.fit` adds it when the EnvDataset's buffer is prioritized and no
    PriorityRefresh was given.

    Example:

    ```python
    agent.fit(data, callbacks=[kerasrl.callbacks.PriorityRefresh()])
    ```
    """

    def on_train_begin(self, logs: Any = None) -> None:
        agent = self.model
        dataset = getattr(agent, "env_dataset", None)
        if dataset is None or not getattr(dataset.buffer, "prioritized", False):
            raise ValueError("PriorityRefresh needs fit over an EnvDataset whose buffer is a "
                             "PrioritizedReplayBuffer.")
        # Updates that can finish between two collector reads: the chunk in
        # training, the prefetched ones and the one being collected.
        rows = MAX_CHUNK * (dataset.prefetch + 3)
        log = agent._td_log
        if log is None or (log.batch_size, log.rows) != (dataset.batch_size, rows):
            agent._td_log = log = TDErrorLog(dataset.batch_size, rows)
            agent.make_train_function(force=True)  # the step now writes into this log
        log.start(int(read_numpy(agent.num_gradient_steps)))

        def apply() -> None:  # the collector calls it holding dataset.lock
            indices, td_errors = log.drain(int(read_numpy(agent.num_gradient_steps)))
            if len(indices):
                dataset.buffer.update_priorities(indices, td_errors)

        dataset.apply_priorities = apply

    def on_train_end(self, logs: Any = None) -> None:
        dataset = self.model.env_dataset
        with dataset.lock:  # EnvDataset.close() disconnects it when fit returns
            dataset.flush_priorities()  # the last updates' priorities, before anyone saves the buffer
