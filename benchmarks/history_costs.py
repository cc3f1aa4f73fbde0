"""What memory costs: LSTM-TD3's acting step, history sampling and update ceiling.

    python benchmarks/history_costs.py --history-length 5 --out benchmarks/results/history_costs.jsonl

Prints one JSON line (and appends it to --out):

* `act_microseconds`: one observation through `agent.act(obs, state=state)`
  with a full window of `--history-length` steps (the numpy copy of the
  actor: Dense -> LSTM over the window -> Dense, and the window moved on);
* `sample_milliseconds`: `ReplayBuffer.sample(--batch-size)` with histories,
  from a buffer of `--transitions` transitions written by `--n-envs`
  interleaved environment copies with episodes of 200 steps, against the same
  buffer without histories (`sample_plain_milliseconds`); with `--n-step n`,
  both buffers keep n-step returns (the histories then come from the step
  ring, two windows per transition);
* `ceiling_updates_per_second`: LSTM-TD3 updates on one fixed batch repeated
  (no environment), at the agent's defaults (the paper's networks) and
  `steps_per_execution` 50, the same measurement as `run.py`'s ceiling.

Targets (issue 18): acting <= 50 µs, sampling a batch of 100 with history 5
<= 0.3 ms. Times are medians of `--repeats` timing loops; run on a quiet
machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def median_time(fn, number: int, repeats: int) -> float:
    """Median over `repeats` loops of the seconds per call of `fn`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return sorted(times)[len(times) // 2]


def filled_buffer(history_length: int, transitions: int, n_envs: int, obs_dim: int, seed: int, n_step: int = 1):
    import numpy as np
    import kerasrl

    buffer = kerasrl.ReplayBuffer(transitions, history_length=history_length, seed=seed, n_step=n_step, gamma=0.99)
    rng = np.random.default_rng(seed)
    for step in range(transitions // n_envs):
        obs = rng.normal(size=(n_envs, obs_dim)).astype(np.float32)
        ends = np.full(n_envs, (step + 1) % 200 == 0)
        buffer.add(obs, rng.uniform(-1, 1, (n_envs, 1)).astype(np.float32), np.zeros(n_envs, np.float32), obs,
                   np.zeros(n_envs, bool), truncated=ends, env_ids=np.arange(n_envs))
    return buffer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--history-length", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--transitions", type=int, default=100_000)
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--n-step", type=int, default=1, help="n-step returns in both buffers")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ceiling-updates", type=int, default=1000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    import gymnasium as gym
    import keras
    import numpy as np
    import tensorflow as tf
    import kerasrl
    from kerasrl.envs import pomdp

    env = pomdp.make("Pendulum-v1", "remove_velocity")
    agent = kerasrl.LSTMTD3.from_env(env, history_length=args.history_length, seed=0)
    obs, _ = env.reset(seed=0)
    state = agent.initial_state()
    for _ in range(args.history_length):  # a full window
        _, state = agent.act(obs, state=state)
    act = median_time(lambda: agent.act(obs, state=state), 2000, args.repeats)

    with_history = filled_buffer(args.history_length, args.transitions, args.n_envs, 2, seed=0, n_step=args.n_step)
    plain = filled_buffer(0, args.transitions, args.n_envs, 2, seed=0, n_step=args.n_step)
    sample = median_time(lambda: with_history.sample(args.batch_size), 500, args.repeats)
    sample_plain = median_time(lambda: plain.sample(args.batch_size), 500, args.repeats)

    agent.compile(optimizer=keras.optimizers.Adam(1e-3))
    batch, _ = with_history.sample(args.batch_size)
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    spe = agent.steps_per_execution
    agent.fit(dataset, epochs=1, steps_per_epoch=4 * spe, verbose=0)  # tracing
    n = -(-args.ceiling_updates // spe) * spe
    seconds = median_time(lambda: agent.fit(dataset, epochs=1, steps_per_epoch=n, verbose=0), 1, 3)

    record = {
        "kind": "history_costs", "history_length": args.history_length, "batch_size": args.batch_size,
        "act_microseconds": act * 1e6, "sample_milliseconds": sample * 1e3,
        "sample_plain_milliseconds": sample_plain * 1e3, "ceiling_updates_per_second": n / seconds,
        "transitions": args.transitions, "n_envs": args.n_envs, "n_step": args.n_step,
        "agent": {k: agent.get_config()[k] for k in ("memory_hidden", "lstm_units", "feature_hidden", "hidden")},
        "command": "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__,
                     "gymnasium": gym.__version__},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    line = json.dumps(record)
    print(line)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
