"""Target-network updates."""

from __future__ import annotations

import keras


class TargetUpdate(keras.callbacks.Callback):
    """Sets how the agent's target networks follow the online networks.

    The blend `target <- tau * online + (1 - tau) * target` itself runs inside
    the agent's compiled train step every `every` gradient steps, so it is exact
    for any `steps_per_execution` and costs no Python call per step.
    """

    def __init__(self, tau: float, every: int = 1):
        super().__init__()
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {tau}.")
        if int(every) < 1:
            raise ValueError(f"every must be >= 1, got {every}.")
        self.tau = float(tau)
        self.every = int(every)

    def on_train_begin(self, logs=None):
        self.model.set_target_update(self.tau, self.every)


class SoftTargetUpdate(TargetUpdate):
    """Polyak averaging of the targets with `tau` every `every` gradient steps.

    Example:

    ```python
    agent.fit(data, epochs=20, steps_per_epoch=1000,
              callbacks=[kerasrl.callbacks.SoftTargetUpdate(tau=0.005)])
    ```
    """

    def __init__(self, tau: float = 0.005, every: int = 1):
        super().__init__(tau, every)


class HardTargetUpdate(TargetUpdate):
    """Copies the online networks into the targets every `every` gradient steps.

    Example:

    ```python
    agent.fit(data, callbacks=[kerasrl.callbacks.HardTargetUpdate(every=1000)])
    ```
    """

    def __init__(self, every: int):
        super().__init__(1.0, every)
