"""The fit loop against its ceiling in one process, block by block.

    python benchmarks/fit_vs_ceiling.py --algo sac --env Pendulum-v1 --blocks 4 --updates 1500

Alternates blocks of `--updates` updates: `agent.fit` over an EnvDataset (the
environment stepped, the buffer filled and sampled, the policy synced), then
the same agent's fit over one fixed in-memory batch (run.py's ceiling). Side by
side, a pair sees the same machine state, which on a VM whose speed changes for
seconds at a time says more than two separate runs. Per block: updates/s, CPU
milliseconds per update of the whole process (`time.process_time`, every
thread), and for fit blocks the CPU milliseconds per update the collector
spent in `EnvDataset.next_batches` (`time.thread_time`). Settings and threads
as in run.py (`--set`, `--intra-op-threads`, `--inter-op-threads`).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as harness  # noqa: E402  (benchmarks/run.py: ALGOS, builders, thread settings)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", choices=sorted(harness.ALGOS), default="sac")
    p.add_argument("--env", default="Pendulum-v1")
    p.add_argument("--blocks", type=int, default=4, help="pairs of (fit, ceiling) blocks")
    p.add_argument("--updates", type=int, default=1500, help="updates per block")
    p.add_argument("--steps-per-execution", type=int, default=50)
    p.add_argument("--policy-sync-every", type=int, default=None)
    p.add_argument("--intra-op-threads", type=int, default=None)
    p.add_argument("--inter-op-threads", type=int, default=None)
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    harness._claim_stdout()
    job = {"intra_op_threads": args.intra_op_threads, "inter_op_threads": args.inter_op_threads,
           "policy_sync_every": args.policy_sync_every}
    harness.configure_threads(job)

    import gymnasium as gym
    import kerasrl

    class TimedEnvDataset(kerasrl.EnvDataset):
        collector_seconds = 0.0

        def next_batches(self, count, generation=None):
            start = time.thread_time()
            try:
                return super().next_batches(count, generation)
            finally:
                self.collector_seconds += time.thread_time() - start

    algo = harness.ALGOS[args.algo]
    settings = algo.settings(args.env, 10 * args.blocks * args.updates, harness.parse_assignments(args.set, "--set"))
    env = gym.make(args.env)
    run = algo.kerasrl(env, args.seed, settings)
    agent = run.agent
    data = TimedEnvDataset(env, agent, seed=args.seed, **run.dataset_kwargs, **harness.dataset_options(job))
    agent.compile(optimizer=run.make_optimizer(2 * args.blocks * args.updates),
                  steps_per_execution=args.steps_per_execution, **run.compile_kwargs)
    warmup = max(args.steps_per_execution, 500 // args.steps_per_execution * args.steps_per_execution)
    agent.fit(data, epochs=1, steps_per_epoch=warmup, callbacks=list(run.callbacks), verbose=0)
    fixed = harness.fixed_batch_dataset(data)
    agent.fit(fixed, epochs=1, steps_per_epoch=warmup, verbose=0)

    rates = {"fit": [], "ceiling": []}
    for block in range(args.blocks):
        for kind in ("fit", "ceiling"):
            data.collector_seconds = 0.0
            cpu, start = time.process_time(), time.perf_counter()
            if kind == "fit":
                agent.fit(data, epochs=1, steps_per_epoch=args.updates, callbacks=list(run.callbacks), verbose=0)
            else:
                agent.fit(fixed, epochs=1, steps_per_epoch=args.updates, verbose=0)
            seconds = time.perf_counter() - start
            rates[kind].append(args.updates / seconds)
            harness.emit({"block": block, "kind": kind, "updates_per_second": args.updates / seconds,
                          "cpu_ms_per_update": (time.process_time() - cpu) / args.updates * 1e3,
                          "collector_cpu_ms_per_update": data.collector_seconds / args.updates * 1e3})
    harness.emit({"kind": "summary", "algo": args.algo, "env": args.env,
                  "fit_over_ceiling": [f / c for f, c in zip(rates["fit"], rates["ceiling"])],
                  "command": "python " + shlex.join(sys.argv), "machine": harness.machine_info(),
                  "date": harness.now()})


if __name__ == "__main__":
    main()
