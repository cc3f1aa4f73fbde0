"""Fitting an agent for a budget of environment steps (used by the CLI and the tuner)."""

from __future__ import annotations

from typing import Any

import keras

EVAL_SEED_OFFSET = 10_000  # evaluation episodes are seeded apart from the training ones


def plan_epochs(updates: int, steps_per_epoch: int) -> list[int]:
    """Gradient steps of each epoch: full epochs, then the remainder (if any)."""
    full, rest = divmod(updates, steps_per_epoch)
    return [steps_per_epoch] * full + ([rest] if rest else [])


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
    """`agent.fit` over `plan`: one call for the full epochs, one for a shorter last epoch.

    Keras' fit has one `steps_per_epoch`, so an exact number of gradient steps
    takes two calls when it is not a multiple. The callbacks are shared by both
    calls (CSVLogger appends), so the run reads as one fit with `len(plan)` epochs.
    """
    if not plan:
        return
    callbacks = list(callbacks or [])
    if verbose:
        callbacks.append(RunProgbar(initial_epoch + len(plan)))
    full = [n for n in plan if n == plan[0]]
    rest = plan[len(full):]
    end = initial_epoch + len(full)
    agent.fit(data, epochs=end, initial_epoch=initial_epoch, steps_per_epoch=plan[0],
              callbacks=callbacks, verbose=verbose)
    if rest and not agent.stop_training:
        agent.fit(data, epochs=end + 1, initial_epoch=end, steps_per_epoch=rest[0],
                  callbacks=callbacks, verbose=verbose)
