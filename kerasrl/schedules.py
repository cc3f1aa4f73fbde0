"""Schedules: values that change with a step counter (reward scale, exploration, beta).

Every schedule is callable on a Python number or a tensor, and serialisable, so
agents and buffers that hold one round-trip through `.keras` files.

Example:

```python
from kerasrl import schedules
eps = schedules.Linear(1.0, 0.05, 10_000)
eps(0), eps(5_000), eps(20_000)   # 1.0, 0.525, 0.05
```
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import keras
import numpy as np
from keras import ops


class Schedule:
    """Base class: `schedule(step) -> value`, with get_config/from_config.

    A Python or numpy number gives a Python float, computed without
    TensorFlow (the collector and the buffers call schedules every step); a
    tensor gives a tensor, for use inside a compiled update.
    """

    def __call__(self, step: Any) -> Any:
        if isinstance(step, (int, float, np.number)):
            return float(self.value_at(float(step)))
        return self.tensor_at(step)

    def value_at(self, step: float) -> float:
        raise NotImplementedError

    def tensor_at(self, step: Any) -> Any:
        raise NotImplementedError

    def get_config(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict) -> "Schedule":
        return cls(**config)


@keras.saving.register_keras_serializable(package="kerasrl")
class Constant(Schedule):
    """The same value at every step."""

    def __init__(self, value: float):
        self.value = float(value)

    def __call__(self, step: Any) -> Any:
        return self.value

    def get_config(self) -> dict:
        return {"value": self.value}


@keras.saving.register_keras_serializable(package="kerasrl")
class Linear(Schedule):
    """From `start` to `end` over `steps` steps, then `end`."""

    def __init__(self, start: float, end: float, steps: int):
        if steps <= 0:
            raise ValueError(f"Linear schedule needs steps > 0, got {steps}.")
        self.start, self.end, self.steps = float(start), float(end), int(steps)

    def value_at(self, step: float) -> float:
        return self.start + min(step / self.steps, 1.0) * (self.end - self.start)

    def tensor_at(self, step: Any) -> Any:
        fraction = ops.minimum(ops.cast(step, "float32") / self.steps, 1.0)
        return self.start + fraction * (self.end - self.start)

    def get_config(self) -> dict:
        return {"start": self.start, "end": self.end, "steps": self.steps}


@keras.saving.register_keras_serializable(package="kerasrl")
class Piecewise(Schedule):
    """Linear interpolation between `(step, value)` points; the last value after."""

    def __init__(self, endpoints: Sequence[Sequence[float]]):
        points = [(int(s), float(v)) for s, v in endpoints]
        if not points or any(b[0] <= a[0] for a, b in zip(points, points[1:])):
            raise ValueError(f"Piecewise needs increasing steps, got {endpoints!r}.")
        self.endpoints = points

    def value_at(self, step: float) -> float:
        steps, values = zip(*self.endpoints)
        return float(np.interp(step, steps, values))

    def tensor_at(self, step: Any) -> Any:
        step = ops.cast(step, "float32")
        value = ops.convert_to_tensor(self.endpoints[0][1])
        for (s0, v0), (s1, v1) in zip(self.endpoints, self.endpoints[1:]):
            fraction = ops.clip((step - s0) / (s1 - s0), 0.0, 1.0)
            value = ops.where(step >= s0, v0 + fraction * (v1 - v0), value)
        return value

    def get_config(self) -> dict:
        return {"endpoints": [list(p) for p in self.endpoints]}


@keras.saving.register_keras_serializable(package="kerasrl")
class Exponential(Schedule):
    """`start * rate ** (step / steps)`, bounded below by `end` (if given)."""

    def __init__(self, start: float, rate: float, steps: int = 1, end: float | None = None):
        self.start, self.rate, self.steps = float(start), float(rate), int(steps)
        self.end = None if end is None else float(end)

    def value_at(self, step: float) -> float:
        value = self.start * math.pow(self.rate, step / self.steps)
        return value if self.end is None else max(value, self.end)

    def tensor_at(self, step: Any) -> Any:
        value = self.start * ops.power(self.rate, ops.cast(step, "float32") / self.steps)
        return value if self.end is None else ops.maximum(value, self.end)

    def get_config(self) -> dict:
        return {"start": self.start, "rate": self.rate, "steps": self.steps, "end": self.end}


def get(value: Any) -> Schedule:
    """A schedule from a number, a schedule, or a serialised schedule."""
    if isinstance(value, (int, float)):
        return Constant(value)
    if isinstance(value, dict):
        value = keras.saving.deserialize_keras_object(value)
    if callable(value):
        return value
    raise ValueError(f"Expected a number or a schedule, got {value!r}.")


def serialize(schedule: Any) -> Any:
    if isinstance(schedule, Constant):
        return schedule.value
    return keras.saving.serialize_keras_object(schedule)
