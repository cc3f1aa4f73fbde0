"""How steadily this machine delivers CPU: one busy loop per core, counted per interval.

    python benchmarks/cpu_steadiness.py --seconds 40

Each process spins a plain Python loop and counts the iterations it completes in
every `--interval` seconds. On dedicated cores the counts stay within a few
percent; on a VM whose host takes CPU away they drop (on the project's 2-core VM,
from 20-23k to 11-13k per half second, for several seconds in a row). Run it
before a benchmark, or beside one's figures, to tell the machine's state from
the library's speed. Prints one JSON line per process, then a summary line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time


def spin(seconds: float, interval: float) -> list[int]:
    counts, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < interval:
            for _ in range(1000):
                pass
            n += 1
        counts.append(n)
    return counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=40.0)
    p.add_argument("--interval", type=float, default=0.5)
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = p.parse_args()
    with multiprocessing.Pool(args.processes) as pool:
        runs = pool.starmap(spin, [(args.seconds, args.interval)] * args.processes)
    for i, counts in enumerate(runs):
        print(json.dumps({"process": i, "counts": counts}))
    everything = [c for counts in runs for c in counts]
    fast = max(everything)
    print(json.dumps({
        "kind": "summary", "interval_seconds": args.interval, "processes": args.processes,
        "max": fast, "min": min(everything),
        # Intervals below 75% of the fastest one: the host gave less than a core.
        "slow_fraction": sum(c < 0.75 * fast for c in everything) / len(everything),
        "command": "python benchmarks/cpu_steadiness.py --seconds {} --interval {} --processes {}".format(
            args.seconds, args.interval, args.processes),
    }))


if __name__ == "__main__":
    main()
