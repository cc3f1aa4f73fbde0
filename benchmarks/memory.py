"""Memory of a long `kerasrl train` run: RSS of the CLI process against environment steps.

    python benchmarks/memory.py --steps 1000000 --interval 25000 --out benchmarks/results/memory_dqn_cartpole.jsonl
    python benchmarks/memory.py --steps 200000 -- --steps-per-epoch 100   # extra arguments go to `kerasrl train`

Runs `python -m kerasrl train ALGO ENV --steps N --out <temporary folder>` as a
user would (the CLI's own defaults and callbacks, TensorBoard included) in a
child process, and reads the resident set size (VmRSS) of that process each
time its `progress.csv` passes another `--interval` environment steps. The
slope is a least-squares line through the samples at or after `--warmup`
steps (buffer filling, tracing and allocator warm-up come before), in MiB per
1,000 environment steps; a steady run stays near 0 (a replay buffer that is
allocated up front does not grow with the steps). The training is the CLI's,
so the figure changes when the CLI does: compare commits, not machines.

stdout carries only JSON lines: one `sample` per interval, then a `summary`
with the slope and the command to reproduce; `--out` also writes them to a
file (appended). The CLI's own output goes to `cli.log` in the run folder,
which is removed afterwards unless `--keep-run`.

The measurements, and what caused the growth before, are in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import machine_info  # noqa: E402  (benchmarks/run.py; python puts this folder on sys.path)

ROOT = Path(__file__).resolve().parent.parent


def rss_mib(pid: int) -> float | None:
    """Resident set size of `pid` in MiB (VmRSS; psutil where /proc is missing), None once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return None
    except FileNotFoundError:
        if sys.platform.startswith("linux"):
            return None
    try:
        import psutil
    except ImportError:
        raise SystemExit("benchmarks/memory.py reads /proc/<pid>/status; elsewhere it needs psutil") from None
    try:
        return psutil.Process(pid).memory_info().rss / 2**20
    except psutil.NoSuchProcess:
        return None


def last_env_steps(progress: Path) -> int | None:
    """`env_steps` of the newest complete row of the CLI's progress.csv, None before the first."""
    try:
        text = progress.read_text()
    except FileNotFoundError:
        return None
    lines = text.splitlines(keepends=True)
    if len(lines) < 2 or not lines[-1].endswith("\n"):  # no row yet, or one half written
        lines = lines[:-1]
    if len(lines) < 2:
        return None
    header, row = next(csv.reader(io.StringIO(lines[0]))), next(csv.reader(io.StringIO(lines[-1])))
    if "env_steps" not in header or len(row) != len(header):
        return None
    try:
        return int(float(row[header.index("env_steps")]))
    except ValueError:
        return None


def slope_per_1000(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of RSS (MiB) over environment steps, per 1,000 steps."""
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return 1000 * sum((x - mx) * (y - my) for x, y in points) / sxx


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", default="dqn")
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--steps", type=int, default=1_000_000, help="environment steps of the training run")
    p.add_argument("--interval", type=int, default=25_000, help="environment steps between RSS samples")
    p.add_argument("--warmup", type=int, default=50_000,
                   help="samples before this many environment steps stay out of the slope")
    p.add_argument("--poll", type=float, default=0.5, help="seconds between looks at progress.csv")
    p.add_argument("--out", type=Path, default=None, help="also append the JSON lines to this file")
    p.add_argument("--keep-run", action="store_true", help="keep the CLI's run folder (printed in the summary)")
    p.add_argument("cli_args", nargs="*", metavar="-- CLI_ARGS",
                   help="more arguments for `kerasrl train` after `--`, e.g. -- --steps-per-epoch 100")
    args = p.parse_args()
    if args.interval < 1 or args.steps < 1:
        p.error("--steps and --interval must be positive")

    run_dir = Path(tempfile.mkdtemp(prefix=f"kerasrl-memory-{args.algo}-"))
    command = [sys.executable, "-m", "kerasrl", "train", args.algo, args.env, "--steps", str(args.steps),
               "--out", str(run_dir / "run"), *args.cli_args]
    out_file = None
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        out_file = args.out.open("a")

    def emit(record: dict) -> None:
        line = json.dumps(record)
        print(line, flush=True)
        if out_file:
            out_file.write(line + "\n")
            out_file.flush()

    progress = run_dir / "run" / "progress.csv"
    samples: list[dict] = []
    start = time.perf_counter()
    with open(run_dir / "cli.log", "w") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT))
        print(f"[memory] pid {child.pid}: {shlex.join(command)}", file=sys.stderr, flush=True)
        next_mark = args.interval
        try:
            while child.poll() is None:
                time.sleep(args.poll)
                steps = last_env_steps(progress)
                if steps is None or steps < next_mark:
                    continue
                rss = rss_mib(child.pid)
                if rss is None:
                    break
                sample = {"kind": "sample", "env_steps": steps, "rss_mib": round(rss, 2),
                          "seconds": round(time.perf_counter() - start, 1)}
                samples.append(sample)
                emit(sample)
                next_mark = (steps // args.interval + 1) * args.interval
        except KeyboardInterrupt:
            child.terminate()
            child.wait()
            raise
        returncode = child.wait()

    fitted = [(s["env_steps"], s["rss_mib"]) for s in samples if s["env_steps"] >= args.warmup]
    slope = slope_per_1000(fitted)
    first = next((s for s in samples if s["env_steps"] >= args.warmup), None)
    summary = {
        "kind": "summary", "algo": args.algo, "env": args.env, "steps": args.steps,
        "cli_args": args.cli_args, "interval": args.interval, "warmup": args.warmup,
        "samples": len(samples), "samples_in_slope": len(fitted),
        "slope_mib_per_1000_steps": None if slope is None else round(slope, 4),
        "rss_first_mib": samples[0]["rss_mib"] if samples else None,
        "rss_at_warmup_mib": first["rss_mib"] if first else None,
        "rss_last_mib": samples[-1]["rss_mib"] if samples else None,
        "growth_after_warmup_mib": round(samples[-1]["rss_mib"] - first["rss_mib"], 2) if first else None,
        "cli_returncode": returncode, "seconds": round(time.perf_counter() - start, 1),
        "commit": git_commit(), "machine": machine_info(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "benchmarks/memory.py", "--algo", args.algo, "--env", args.env,
                               "--steps", str(args.steps), "--interval", str(args.interval),
                               "--warmup", str(args.warmup)] + (["--", *args.cli_args] if args.cli_args else [])),
        "cli_command": shlex.join(["python", "-m", "kerasrl", "train", args.algo, args.env, "--steps",
                                   str(args.steps), *args.cli_args]),
    }
    if args.keep_run:
        summary["run_dir"] = str(run_dir)
    emit(summary)
    if out_file:
        out_file.close()
    if returncode != 0:
        tail = (run_dir / "cli.log").read_text()[-3000:]
        print(f"[memory] kerasrl train exited with {returncode}; the end of its output:\n{tail}", file=sys.stderr)
    if not args.keep_run:
        shutil.rmtree(run_dir, ignore_errors=True)
    sys.exit(1 if returncode != 0 else 0)


if __name__ == "__main__":
    main()
