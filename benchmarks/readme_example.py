"""The README's first example, run as written, beside `run.py` at the same settings.

    python benchmarks/readme_example.py --out benchmarks/results/readme_example.jsonl

Takes the first Python block under "## A first example" in README.md and runs it
unchanged in a temporary folder (it writes log.csv and sac_pendulum.keras
there); the only addition is a wrapper around `Agent.fit` that times the call and
reads the dataset's env steps, so the figure is env steps per second over the
training call, compile included, as `run.py` counts it. Then (unless
`--no-harness`) `run.py` trains the same agent at the example's settings (SAC,
256x256, Adam 1e-3, buffer 100k, batch 256, learning_starts 1000, 20 epochs of
1000 updates = 21k env steps, seed 0, no ceiling) in a fresh process. Each run
is its own process, one after the other. stdout carries one JSON line per run
and a summary with the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def readme_example() -> str:
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text[text.index("## A first example"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def run_example() -> dict:
    """Runs in this process: the README block, with Agent.fit timed."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import kerasrl

    timings = []
    original_fit = kerasrl.Agent.fit

    def timed_fit(self, x=None, *args, **kwargs):
        steps_before = x.env_steps
        start = time.perf_counter()
        try:
            return original_fit(self, x, *args, **kwargs)
        finally:
            timings.append((time.perf_counter() - start, x.env_steps - steps_before))

    kerasrl.Agent.fit = timed_fit
    code = readme_example()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        start = time.perf_counter()
        exec(compile(code, "README.md (A first example)", "exec"), {"__name__": "__readme__"})
        total = time.perf_counter() - start
    seconds, env_steps = timings[0]
    return {"kind": "readme_example", "env_steps": env_steps, "fit_seconds": round(seconds, 2),
            "steps_per_second": round(env_steps / seconds, 1), "script_seconds": round(total, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-harness", action="store_true", help="only the README example")
    parser.add_argument("--out", default=None, help="also append the JSON lines to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_example()), flush=True)
        return
    records = []
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker"], capture_output=True, text=True,
                          check=True)
    records.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    if not args.no_harness:
        command = [sys.executable, os.path.join(HERE, "run.py"), "--algo", "sac", "--env", "Pendulum-v1",
                   "--steps", "21000", "--seeds", "0", "--no-ceiling", "--eval-episodes", "10",
                   "--set", "learning_starts=1000", "buffer_size=100000"]
        proc = subprocess.run(command, capture_output=True, text=True, check=True)
        lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        run = next(r for r in lines if r.get("lib") == "kerasrl" and "kind" not in r)
        run["kind"] = "run.py"
        records.append(run)
        records.append({"kind": "summary", "readme_over_run_py": round(
            records[0]["steps_per_second"] / run["steps_per_second"], 3),
            "command": "python benchmarks/readme_example.py", "run_py_command": " ".join(command[1:])})
    for record in records:
        line = json.dumps(record)
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
