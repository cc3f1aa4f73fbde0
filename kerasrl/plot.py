"""Learning curves from run folders: episode and evaluation return against environment steps.

A run folder is what `kerasrl train` (or `keras.callbacks.CSVLogger` beside
`kerasrl.callbacks.EvalCallback`) writes: `progress.csv` with one row per epoch
holding `env_steps`, `episode_return` and, with evaluation, `eval_return`; and
optionally `config.json` with `algo`, `env` and `seed`. Runs with the same
algorithm and environment are seeds of one curve: drawn as their mean with the
min-max band across seeds.

Example:

```python
from kerasrl import plot
plot.plot_runs(["runs/td3-s0", "runs/td3-s1", "runs/sac-s0"], "curve.png")
```
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

COLUMNS = ("episode_return", "eval_return")
TITLES = {"episode_return": "Training episode return (last 10 episodes)",
          "eval_return": "Evaluation return (deterministic policy)"}


@dataclass
class Run:
    """One run folder's curves."""

    path: Path
    label: str  # runs with the same label are seeds of one curve
    env_steps: np.ndarray
    values: dict[str, np.ndarray]  # column -> values (NaN where not logged)


def _number(text: str | None) -> float:
    """A CSV cell as a float; NaN for empty, "NA" or missing cells."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def load_run(run_dir: str | Path) -> Run:
    """Reads `progress.csv` (and `config.json` if present) from a run folder.

    Raises:
        ValueError: the folder has no progress.csv, or it lacks env_steps or
            both return columns.
    """
    path = Path(run_dir)
    progress = path / "progress.csv" if path.is_dir() else path
    if not progress.is_file():
        raise ValueError(f"{path} holds no progress.csv (write one with `kerasrl train` or keras.callbacks.CSVLogger)")
    with open(progress, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "env_steps" not in rows[0] or not any(c in rows[0] for c in COLUMNS):
        raise ValueError(f"{progress} needs an env_steps column and episode_return or eval_return columns")
    env_steps = np.array([_number(row["env_steps"]) for row in rows])
    values = {c: np.array([_number(row.get(c)) for row in rows]) for c in COLUMNS}
    label = path.name if path.is_dir() else path.parent.name
    config_file = (path if path.is_dir() else path.parent) / "config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text())
        if config.get("algo") and config.get("env"):
            label = f"{config['algo']} {config['env']}"
    return Run(path, label, env_steps, values)


def mean_and_band(runs: Sequence[Run], column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeds on a common grid: the logged env steps inside the range every run covers, each run
    interpolated onto them.

    Returns (env_steps, mean, min, max); empty arrays when no run logged `column`.
    """
    series = []
    for run in runs:
        ok = np.isfinite(run.env_steps) & np.isfinite(run.values[column])
        if ok.any():
            series.append((run.env_steps[ok], run.values[column][ok]))
    if not series:
        empty = np.array([])
        return empty, empty, empty, empty
    start, end = max(x[0] for x, _ in series), min(x[-1] for x, _ in series)
    grid = np.unique(np.concatenate([x[(x >= start) & (x <= end)] for x, _ in series]))
    stacked = np.stack([np.interp(grid, x, y) for x, y in series])
    return grid, stacked.mean(0), stacked.min(0), stacked.max(0)


def plot_runs(run_dirs: Sequence[str | Path], output: str | Path, title: str | None = None) -> Path:
    """Draws episode return and eval return against env steps into `output` (PNG, SVG, PDF ...).

    Args:
        run_dirs: run folders (or progress.csv files); those with the same
            algorithm and environment in config.json are averaged as seeds.
        output: the image file to write.
        title: the figure title.

    Returns:
        The path written.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError('kerasrl plot needs matplotlib: pip install "kerasrl[plot]"') from error

    runs = [load_run(d) for d in run_dirs]
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.label, []).append(run)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharex=True)
    for ax, column in zip(axes, COLUMNS):
        drawn = False
        for index, (label, members) in enumerate(groups.items()):
            steps, mean, low, high = mean_and_band(members, column)
            if not len(steps):
                continue
            color = f"C{index % 10}"
            seeds = f" ({len(members)} seeds)" if len(members) > 1 else ""
            ax.plot(steps, mean, color=color, label=label + seeds, marker="." if len(steps) < 30 else None)
            if len(members) > 1:
                ax.fill_between(steps, low, high, color=color, alpha=0.2, linewidth=0)
            drawn = True
        ax.set_title(TITLES[column])
        ax.set_xlabel("environment steps")
        ax.set_ylabel("return")
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(loc="best", fontsize="small")
        else:
            ax.text(0.5, 0.5, f"no {column} logged", ha="center", va="center", transform=ax.transAxes)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output
