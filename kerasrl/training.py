"""Fitting an agent for a budget of environment steps (used by the CLI and the tuner)."""

from __future__ import annotations

from typing import Any

import keras

EVAL_SEED_OFFSET = 10_000  # evaluation episodes are seeded apart from the training ones


def plan_epochs(updates: int, steps_per_epoch: int) -> list[int]:
    """Gradient steps of each epoch: full epochs, then the remainder (if any)."""
    full, rest = divmod(updates, steps_per_epoch)
    return [steps_per_epoch] * full + ([rest] if rest else [])


def remaining_plan(plan: list[int], done: int) -> tuple[int, list[int]]:
    """Where a run of `plan` stands after `done` gradient steps: `(epoch, steps of each epoch left)`.

    The epoch in progress comes first with the steps it still has, so a resumed
    run ends with the same epochs and gradient steps as one never interrupted.
    """
    start = 0
    for epoch, steps in enumerate(plan):
        if done < start + steps:
            return epoch, [start + steps - done] + plan[epoch + 1:]
        start += steps
    return len(plan), []


class StopAtEnvSteps(keras.callbacks.Callback):
    """Ends the run once `data` has collected `steps` environment steps.

    For rollouts of whole episodes, whose env steps per update are not known
    ahead: the plan allows one update per env step and this ends it.
    """

    def __init__(self, data: Any, steps: int):
        super().__init__()
        self.data, self.steps = data, steps

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.data.env_steps >= self.steps:
            self.model.stop_training = True


class RunProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, numbering epochs out of the whole run across fit calls."""

    def __init__(self, total_epochs: int):
        super().__init__()
        self.total_epochs = total_epochs

    def set_params(self, params: dict) -> None:
        super().set_params(params)
        self.epochs = self.total_epochs


def fit_plan(agent: Any, data: Any, plan: list[int], initial_epoch: int = 0,
             callbacks: list | None = None, verbose: int = 0) -> None:
    """`agent.fit` over `plan`, epoch `initial_epoch + i` taking `plan[i]` gradient steps.

    Keras' fit has one `steps_per_epoch`, so each run of equal epochs is one
    call (usually full epochs, then a shorter last one; a resumed run starts
    with the rest of its interrupted epoch). The callbacks are shared by all
    calls (CSVLogger appends), so the run reads as one fit with `len(plan)`
    epochs.
    """
    callbacks = list(callbacks or [])
    if verbose and plan:
        callbacks.append(RunProgbar(initial_epoch + len(plan)))
    epoch, i = initial_epoch, 0
    while i < len(plan):
        same = 1
        while i + same < len(plan) and plan[i + same] == plan[i]:
            same += 1
        agent.fit(data, epochs=epoch + same, initial_epoch=epoch, steps_per_epoch=plan[i],
                  callbacks=callbacks, verbose=verbose)
        if agent.stop_training:  # EarlyStopping and co. end the whole run
            return
        epoch, i = epoch + same, i + same
