"""The README's benchmark rows, printed from the raw lines of `run.py`.

    python benchmarks/table.py benchmarks/results/sac_pendulum_peers.jsonl [more files...]

Each file's last summary line becomes one markdown row: each library's median
env steps/s with its range over seeds, the ratios of medians with the per-seed
ratios' range, the fraction of the ceiling, the fraction of the arithmetic limit
(the fit's updates/s over the last `arithmetic_limit.py` line for the same
algorithm, task and CPU model in `--limits`) and the mean evaluation returns. A
single seed gets no ranges. The README's tables are pasted from this output, so
every figure in them is in a file (tests/test_benchmark_harness.py checks each
row against its raw file).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PEERS = ("sb3", "sbx")
HEADER = ("| task | env steps | seeds | kerasrl steps/s | SB3 steps/s | SBX steps/s | kerasrl / SB3 | kerasrl / SBX "
          "| fraction of ceiling | fraction of arithmetic limit | eval: kerasrl, SB3, SBX | raw |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def rate(lib: dict | None) -> str:
    if not lib:
        return "—"
    low, high = lib["steps_per_second_range"]
    median = f"{lib['steps_per_second']:.1f}"
    return median if len(lib["seeds"]) == 1 else f"{median} ({low:.1f}–{high:.1f})"  # one seed has no range


def ratio(r: dict | None) -> str:
    if not r:
        return "—"
    median = f"**{r['median']:.2f}x**"
    return median if len(r["per_seed"]) == 1 else f"{median} ({r['min']:.2f}–{r['max']:.2f})"  # as in rate


def evals(summary: dict) -> str:
    out = []
    for lib in ("kerasrl", *PEERS):
        if lib in summary:
            out.append(f"{summary[lib]['eval_mean']:.0f}".replace("-", "−"))
    return ", ".join(out)


def limits_by_task(path: Path | None) -> dict[tuple[str, str, str | None], dict]:
    """The last arithmetic_limit.py line per (algo, env, CPU model) in `path`."""
    if path is None:
        return {}
    lines = [json.loads(line) for line in path.read_text().splitlines() if '"kind": "arithmetic_limit"' in line]
    return {(r["algo"], r["env"], cpu_model(r)): r for r in lines}


def cpu_model(record: dict) -> str | None:
    return record.get("machine", {}).get("cpu_model")


def row(path: Path, label: str | None, link_prefix: str, limits: dict | None = None) -> str:
    summaries = [json.loads(line) for line in path.read_text().splitlines() if '"kind": "summary"' in line]
    if not summaries:
        raise SystemExit(f"{path}: no summary line (did the run finish?)")
    s = summaries[-1]
    fraction = f"{s['fraction_of_ceiling']:.2f}" if s.get("fraction_of_ceiling") else "—"
    # A limit measured on another CPU says nothing about this run (the VM's CPU model changes).
    limit = (limits or {}).get((s["algo"], s["env"], cpu_model(s)))
    of_limit = f"{s['kerasrl']['updates_per_second'] / limit['limit_updates_per_second']:.2f}" if limit else "—"
    seeds = " ".join(str(k) for k in s["kerasrl"]["seeds"])
    task = label or f"{s['algo'].upper()} {s['env']}"
    return (f"| {task} | {s['steps'] // 1000}k | {seeds} | {rate(s.get('kerasrl'))} | {rate(s.get('sb3'))} "
            f"| {rate(s.get('sbx'))} | {ratio(s.get('ratio_vs_sb3'))} | {ratio(s.get('ratio_vs_sbx'))} | {fraction} "
            f"| {of_limit} "
            f"| {evals(s)} | [{path.name}]({link_prefix}{path.name}) |")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--labels", nargs="*", default=[], help="task labels, one per file (default: ALGO env)")
    p.add_argument("--link-prefix", default="benchmarks/results/")
    p.add_argument("--limits", type=Path, default=None, help="arithmetic_limit.py's raw lines")
    args = p.parse_args(argv)
    limits = limits_by_task(args.limits)
    print(HEADER)
    for i, path in enumerate(args.files):
        print(row(path, args.labels[i] if i < len(args.labels) else None, args.link_prefix, limits))


if __name__ == "__main__":
    main()
