"""Returns and advantages over a rollout, as plain functions (for on-policy learning).

A rollout is `T` steps of `N` environment copies: arrays of shape (T, N). At
step t, copy n took an action in state s_t, got `rewards[t, n]` and moved to
s'_t. When the episode ended at t, s'_t is its true final observation (the
environment loop keeps it apart from the next episode's first one) and
`terminated[t, n]` or `truncated[t, n]` is set. `values[t, n]` is V(s_t) and
`next_values[t, n]` is V(s'_t).

The rules every function follows: a return never bootstraps through a
termination (the value after it is 0), bootstraps from V(s'_t) at a
truncation and at the end of the rollout, and never carries anything from one
episode into the next.

Example:

```python
import numpy as np
from kerasrl import returns
rewards = np.ones((3, 1)); values = np.zeros((3, 1)); next_values = np.full((3, 1), 10.0)
terminated = np.array([[False], [False], [True]]); truncated = np.zeros((3, 1), bool)
returns.discounted_returns(rewards, next_values, terminated, truncated, gamma=0.5)[:, 0]  # [1.75, 1.5, 1.0]
advantages, targets = returns.gae(rewards, values, next_values, terminated, truncated, gamma=0.5, gae_lambda=0.95)
```
"""

from __future__ import annotations

import numpy as np


def _check(rewards: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    arrays = [np.asarray(rewards, np.float64), *(np.asarray(a) for a in others)]
    shape = arrays[0].shape
    if len(shape) != 2:
        raise ValueError(f"A rollout's arrays are (steps, envs); rewards have shape {shape}.")
    for a in arrays[1:]:
        if a.shape != shape:
            raise ValueError(f"Every rollout array must have the rewards' shape {shape}, got {a.shape}.")
    if not np.isfinite(arrays[0]).all():
        raise ValueError("The rollout's rewards hold NaN or inf.")
    return tuple(arrays)


def gae(rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray, terminated: np.ndarray,
        truncated: np.ndarray, gamma: float = 0.99, gae_lambda: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Generalized advantage estimation, GAE(λ) (Schulman et al. 2016).

    δ_t = r_t + γ (1 − terminated_t) V(s'_t) − V(s_t), and
    A_t = δ_t + γ λ (1 − done_t) A_{t+1}, with done_t = terminated_t or
    truncated_t (the last step of the rollout takes A_{T} = 0). λ = 1 gives
    the Monte-Carlo advantage, λ = 0 the one-step TD error.

    Returns:
        `(advantages, value_targets)`, both (T, N) float32; the value targets
        are A_t + V(s_t), what the critic regresses to (SB3's `returns`).
    """
    rewards, values, next_values, terminated, truncated = _check(rewards, values, next_values, terminated,
                                                                 truncated)
    not_terminated = 1.0 - terminated.astype(np.float64)
    continues = 1.0 - (terminated | truncated).astype(np.float64)
    deltas = rewards + gamma * not_terminated * next_values - values
    advantages = np.zeros_like(rewards)
    running = np.zeros(rewards.shape[1])
    for t in range(len(rewards) - 1, -1, -1):
        running = deltas[t] + gamma * gae_lambda * continues[t] * running
        advantages[t] = running
    return advantages.astype(np.float32), (advantages + values).astype(np.float32)


def discounted_returns(rewards: np.ndarray, next_values: np.ndarray, terminated: np.ndarray,
                       truncated: np.ndarray, gamma: float = 0.99) -> np.ndarray:
    """Monte-Carlo returns G_t = r_t + γ G_{t+1} within each episode, (T, N) float32.

    Bootstraps from V(s'_t) where the rollout or a truncation cuts an
    episode; a terminated episode's return ends with its last reward. With
    whole episodes (the rollout ends each one by termination) no value is
    read, as in seed 003's actor-critic.
    """
    rewards, next_values, terminated, truncated = _check(rewards, next_values, terminated, truncated)
    out = np.empty_like(rewards)
    following = np.zeros(rewards.shape[1])  # G_{t+1}, for copies whose episode goes on
    for t in range(len(rewards) - 1, -1, -1):
        # Where the episode is cut here (a truncation, or the rollout's last step) the rest is V(s'_t).
        cut = truncated[t] | (t == len(rewards) - 1)
        rest = np.where(terminated[t], 0.0, np.where(cut, next_values[t], following))
        following = rewards[t] + gamma * rest
        out[t] = following
    return out.astype(np.float32)


def n_step_returns(rewards: np.ndarray, next_values: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
                   n: int, gamma: float = 0.99) -> np.ndarray:
    """n-step returns Σ_{k<m} γ^k r_{t+k} + γ^m V(s'_{t+m−1}), (T, N) float32.

    m is n, or fewer where the episode or the rollout ends first; the
    bootstrap is 0 after a termination. n = 1 gives the one-step TD target,
    n ≥ T the Monte-Carlo return.
    """
    rewards, next_values, terminated, truncated = _check(rewards, next_values, terminated, truncated)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    steps, envs = rewards.shape
    done = terminated | truncated
    out = np.empty_like(rewards)
    for t in range(steps):
        total, discount = np.zeros(envs), np.ones(envs)
        open_ = np.ones(envs, bool)  # copies whose window has not ended yet
        last = np.full(envs, t)  # each copy's last step in its window
        for k in range(t, min(t + n, steps)):
            total += np.where(open_, discount * rewards[k], 0.0)
            last = np.where(open_, k, last)
            discount = np.where(open_, discount * gamma, discount)
            open_ &= ~done[k]
        bootstrap = np.where(terminated[last, np.arange(envs)], 0.0, next_values[last, np.arange(envs)])
        out[t] = total + discount * bootstrap
    return out.astype(np.float32)
