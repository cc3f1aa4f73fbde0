"""What one update costs, split into a fixed part and a per-sample part.

    python benchmarks/update_cost.py --algo dqn --env LunarLander-v3 --batch-sizes 8 32 128 256 \
        --intra-op-threads 1 --inter-op-threads 2 --set dueling=true prioritized=true n_steps=3

Runs run.py's ceiling (the agent's fit over one fixed in-memory batch) at
several batch sizes and fits `CPU ms per update = fixed + per_sample * batch`
to the medians of `--reps` repetitions. The fixed part is what every update
pays whatever its batch (op dispatch, optimizer and target bookkeeping, the
input pipeline); the per-sample part is the arithmetic. Where the fixed part is
small, fewer ops cannot make the update much faster; where it dominates, the
arithmetic is not the problem. CPU time is the process's (`time.process_time`,
every thread). Settings and threads as in run.py.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as harness  # noqa: E402  (benchmarks/run.py: ALGOS, builders, thread settings)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", choices=sorted(harness.ALGOS), default="dqn")
    p.add_argument("--env", default="LunarLander-v3")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32, 128, 256])
    p.add_argument("--updates", type=int, default=2000, help="updates per repetition")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--steps-per-execution", type=int, default=50)
    p.add_argument("--intra-op-threads", type=int, default=None)
    p.add_argument("--inter-op-threads", type=int, default=None)
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    harness._claim_stdout()
    assignments = harness.parse_assignments(args.set, "--set")
    medians = []
    for batch_size in args.batch_sizes:
        ceiling = harness.run_ceiling({
            "algo": args.algo, "env": args.env, "steps": 10 * args.updates,
            "set": {**assignments, "batch_size": batch_size}, "steps_per_execution": args.steps_per_execution,
            "ceiling_updates": args.updates, "ceiling_repetitions": args.reps,
            "intra_op_threads": args.intra_op_threads, "inter_op_threads": args.inter_op_threads,
        })
        n = ceiling["updates"]
        cpu_ms = [seconds / n * 1e3 for seconds in ceiling["repetitions_cpu_seconds"]]
        medians.append(statistics.median(cpu_ms))
        harness.emit({"batch_size": batch_size, "cpu_ms_per_update": cpu_ms,
                      "updates_per_second": [n / seconds for seconds in ceiling["repetitions_seconds"]],
                      "median_cpu_ms_per_update": medians[-1]})
    per_sample, fixed_ms = np.polyfit(args.batch_sizes, medians, 1)
    harness.emit({"kind": "summary", "algo": args.algo, "env": args.env,
                  "fixed_cpu_ms_per_update": float(fixed_ms), "cpu_us_per_sample": float(per_sample * 1e3),
                  "command": "python " + shlex.join(sys.argv), "machine": harness.machine_info(),
                  "date": harness.now()})


if __name__ == "__main__":
    main()
