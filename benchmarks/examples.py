"""Do the examples learn, every time? Runs an example script repeatedly and checks its return.

    python benchmarks/examples.py dqn_lunarlander --seeds 0 0 0 1 2 --parallel 2 --out results.jsonl

Each run is `python examples/<name>.py --seed <k> --out <scratch>` in a fresh
process; the script's lines "[label: ]deterministic evaluation: <mean> ± <std>"
are its results (td3_ddpg prints one per agent). A seed given several times is
repeated: collection overlaps the update, so one seed does not repeat a run
exactly, and a user who copies an example gets one of those runs. Prints one JSON line per run and a summary line (how
many runs reached every return the README and the example's docstring state,
STATED_RETURNS); exits 1 if one did not.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import hashlib
import os
import queue
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import _claim_stdout, emit as emit_line, machine_info, now  # noqa: E402  (benchmarks/run.py)

ROOT = Path(__file__).resolve().parents[1]
# The returns the README and each example's docstring promise at the example's budget: one
# per evaluation line the example prints, keyed by the line's label ("" where it has one line).
STATED_RETURNS = {
    "actor_critic_cartpole": {"": 475.0},  # gymnasium's reward_threshold for CartPole-v1
    "dqn_lunarlander": {"": 150.0},
    "dqn_cartpole": {"": 475.0},  # gymnasium's reward_threshold for CartPole-v1
    "ppo_lunarlander": {"": 200.0},  # gymnasium's reward_threshold for LunarLander-v3
    "sac_cartpole": {"": 475.0},  # gymnasium's reward_threshold for CartPole-v1
    "sac_pendulum": {"": -200.0},
    "tune_sac": {"after more training": -200.0},
    # TD3 at 110k env steps: a cheetah that runs (random policy about -1200); DDPG: swung up and held.
    "td3_ddpg": {"TD3 on HalfCheetahBulletEnv-v0": 400.0, "DDPG on Pendulum-v1": -200.0},
}
# "deterministic evaluation: -130.2 ± 80.1 ..." with an optional label before it
# ("TD3 on HalfCheetahBulletEnv-v0: ...", "after more training, ...").
RESULT = re.compile(r"^(.*?)[ ,:]*deterministic evaluation:? (-?[\d.]+) ± ([\d.]+)", re.M)


def evaluations(stdout: str) -> dict[str, float]:
    """The evaluation lines an example printed, as {label: mean return}."""
    return {label: float(mean) for label, mean, _ in RESULT.findall(stdout)}


def reached(record: dict) -> bool:
    stated = STATED_RETURNS[record["example"]]
    means = record.get("eval_means", {})
    return set(means) >= set(stated) and all(means[label] >= stated[label] for label in stated)


def run_example(name: str, seed: int, cpu: int | None, keep_in: str | None = None) -> dict:
    """One run of an example in a fresh process; what it writes goes to a folder under `keep_in` (kept) or to a
    temporary one."""
    script = ROOT / "examples" / f"{name}.py"
    example_sha1 = hashlib.sha1(script.read_bytes()).hexdigest()[:12]  # which version of the example ran
    command = [sys.executable, str(script), "--seed", str(seed)]
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        command = ["taskset", "-c", str(cpu), *command]
    with contextlib.ExitStack() as stack:
        if keep_in:
            os.makedirs(keep_in, exist_ok=True)
            out = tempfile.mkdtemp(prefix=f"{name}-seed{seed}-", dir=keep_in)
        else:
            out = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"kerasrl-example-{name}-"))
        start = time.perf_counter()
        proc = subprocess.run([*command, "--out", out], capture_output=True, text=True,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        seconds = time.perf_counter() - start
    means = evaluations(proc.stdout)
    if proc.returncode != 0 or not means:
        sys.stderr.write(proc.stderr[-3000:])
        return {"example": name, "seed": seed, "status": "failed", "returncode": proc.returncode,
                "seconds": round(seconds, 1), "date": now()}
    record = {"example": name, "seed": seed, "eval_means": means, "seconds": round(seconds, 1), "cpu": cpu,
              "example_sha1": example_sha1, "date": now(), "machine": machine_info()}
    if keep_in:
        record["run_folder"] = out
    if len(means) == 1:
        record["eval_mean"] = next(iter(means.values()))
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("example", choices=sorted(STATED_RETURNS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 0, 0, 1, 2],
                   help="one run per entry; repeat a seed to repeat its run")
    p.add_argument("--parallel", type=int, default=1,
                   help="runs at a time, each pinned to its own CPU (2 on this 2-core machine)")
    p.add_argument("--out", default=None, help="also append the JSON lines to this file")
    p.add_argument("--keep", default=None, metavar="DIR",
                   help="keep each run's output (logs, curves, the saved agent) in a folder under DIR")
    args = p.parse_args(argv)

    _claim_stdout()

    def emit(record: dict) -> None:
        emit_line(record, args.out)

    free_cpus: queue.Queue = queue.Queue()  # a run takes a CPU no other run holds, and gives it back
    for cpu in range(args.parallel):
        free_cpus.put(cpu if args.parallel > 1 else None)

    def on_a_free_cpu(seed: int) -> dict:
        cpu = free_cpus.get()
        try:
            return run_example(args.example, seed, cpu, args.keep)
        finally:
            free_cpus.put(cpu)

    with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
        futures = [pool.submit(on_a_free_cpu, seed) for seed in args.seeds]
        records = []
        for future in concurrent.futures.as_completed(futures):  # each line as soon as its run ends
            records.append(future.result())
            emit(records[-1])
    stated = STATED_RETURNS[args.example]
    ok = [reached(r) for r in records]
    emit({"kind": "summary", "example": args.example, "stated_returns": stated, "runs": len(records),
          "reached": sum(ok), "seeds": args.seeds, "eval_means": [r.get("eval_means") for r in records],
          "command": "python " + " ".join(sys.argv), "date": now()})
    return 0 if all(ok) else 1


if __name__ == "__main__":
    raise SystemExit(main())
