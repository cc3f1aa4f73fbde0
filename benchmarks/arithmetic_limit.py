"""How fast could one update be on this CPU? Its matrix products, timed alone.

    python benchmarks/arithmetic_limit.py --algo sac --env Pendulum-v1 --out benchmarks/results/arithmetic_limit.jsonl

Traces the agent's `train_step` (forward passes, gradients, optimizer) at
run.py's settings on one batch, counts its floating-point operations with
TensorFlow's profiler (`float_operation`) and lists its matrix products (M, K,
N from the traced shapes). Then, in a fresh process per thread count (1 and 2
intra-op threads), it times exactly those products in a compiled loop (inputs
in variables, so nothing folds away) and a large square product for the CPU's
peak. An update cannot run faster than its matrix products. One core does them
in `matmul_seconds_per_update` (1 thread); a second thread inside one of these
small products gains less than a second core doing other work (nothing for
SAC's 256-wide layers, 1.5x for TD3's 400x300 ones), so the machine's limit,
`limit_updates_per_second`, is the ideal of both cores busy with products all
the time: 2 / (their 1-thread time) on this 2-core machine (`--cores`). What the
measured ceiling loses to it is the update's other work (element-wise ops,
optimizer, bookkeeping) and cores left idle.

`--ceiling` also runs run.py's ceiling (the whole update in Keras' compiled
loop on a fixed batch, TF's default threads) beside it and prints its fraction
of the limit. `python benchmarks/table.py --limits <this file>` puts the fit's
fraction of the limit in the README's table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as harness  # noqa: E402  (benchmarks/run.py: ALGOS, builders, the ceiling)

MATMUL_OPS = ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")


def update_graph(job: dict):
    """The traced graph of one `train_step` on one batch of run.py's settings."""
    import tensorflow as tf

    run, _, dataset, settings = harness.on_fixed_batch(job)
    agent, batch = run.agent, dict(next(iter(dataset)))
    agent.compile(optimizer=run.make_optimizer(job["steps"]), **run.compile_kwargs)
    agent.train_on_batch(batch)  # builds the optimizers' variables outside the trace
    return tf.function(agent.train_step).get_concrete_function(batch).graph, settings


def count_flops(graph) -> int:
    import tensorflow as tf

    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return int(tf.compat.v1.profiler.profile(graph, options=options).total_float_ops)


def matmul_shapes(graph) -> list[tuple[int, int, int]]:
    """(M, K, N) of each matrix product in the graph (batch dimensions folded into M)."""
    shapes = []
    for op in graph.get_operations():
        if op.type not in MATMUL_OPS:
            continue
        a, b = (t.shape.as_list() for t in op.inputs[:2])
        transpose_a = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
        transpose_b = op.get_attr("transpose_b" if op.type == "MatMul" else "adj_y")
        batch = 1
        for d in a[:-2]:
            batch *= d
        m, k = (a[-1], a[-2]) if transpose_a else (a[-2], a[-1])
        n = b[-2] if transpose_b else b[-1]
        shapes.append((batch * m, k, n))
    return shapes


def time_matmuls(shapes: list[tuple[int, int, int]], threads: int, repeats: int) -> dict:
    """Seconds per pass over `shapes` and the GFLOP/s of a 1024^3 product, with `threads` intra-op threads."""
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    rng = np.random.default_rng(0)

    def loop_seconds(pairs: list, n: int) -> float:
        variables = [(tf.Variable(rng.standard_normal(a, dtype=np.float32)),
                      tf.Variable(rng.standard_normal(b, dtype=np.float32))) for a, b in pairs]

        @tf.function
        def passes(count):
            def body(i, acc):
                # Each product feeds the accumulator, so none is pruned; one element is cheap to read.
                for a, b in variables:
                    acc += tf.matmul(a, b)[0, 0]
                return i + 1, acc
            return tf.while_loop(lambda i, acc: i < count, body, (tf.constant(0), tf.constant(0.0)))[1]

        passes(tf.constant(2))  # trace
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            passes(tf.constant(n)).numpy()
            best = min(best, time.perf_counter() - start)
        return best / n

    update_seconds = loop_seconds([((m, k), (k, n)) for m, k, n in shapes], repeats)
    side = 1024
    square_seconds = loop_seconds([((side, side), (side, side))], 20)
    return {"threads": threads, "matmul_seconds_per_update": update_seconds,
            "update_matmul_gflops_per_second": sum(2 * m * k * n for m, k, n in shapes) / update_seconds / 1e9,
            "peak_gflops_per_second": 2 * side ** 3 / square_seconds / 1e9}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.task_arguments(p)
    p.add_argument("--cores", type=int, default=os.cpu_count(), help="cores the limit assumes busy")
    p.add_argument("--repeats", type=int, default=500, help="passes over the update's products per timing")
    p.add_argument("--ceiling", action="store_true", help="also run run.py's ceiling beside it")
    p.add_argument("--out", default=None, help="also append the JSON lines to this file")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    harness._claim_stdout()
    if args.worker:  # one thread count in a fresh process: TF fixes its thread pools at the first op
        job = json.loads(args.worker)
        harness.emit(time_matmuls([tuple(s) for s in job["shapes"]], job["threads"], job["repeats"]))
        return

    job = {"algo": args.algo, "env": args.env, "steps": args.steps, "set": harness.parse_assignments(args.set, "--set"),
           "steps_per_execution": 50, "ceiling_updates": 3000}
    graph, settings = update_graph(job)
    shapes = matmul_shapes(graph)
    flops, matmul_flops = count_flops(graph), sum(2 * m * k * n for m, k, n in shapes)
    timings = []
    for threads in (1, 2):
        worker = json.dumps({"shapes": shapes, "threads": threads, "repeats": args.repeats})
        out = subprocess.run([sys.executable, __file__, "--worker", worker], check=True, capture_output=True,
                             text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}).stdout
        timings.append(json.loads(out.strip().splitlines()[-1]))
    record = {"kind": "arithmetic_limit", "algo": args.algo, "env": args.env, "settings": settings,
              "flops_per_update": flops, "matmul_flops_per_update": matmul_flops, "matmuls": len(shapes),
              "timings": timings, "cores": args.cores,
              "limit_updates_per_second": args.cores / timings[0]["matmul_seconds_per_update"]}  # 1 thread per core
    if args.ceiling:
        ceiling = harness.run_ceiling(job)
        record["ceiling_updates_per_second"] = ceiling["updates_per_second"]
        record["ceiling_fraction_of_limit"] = ceiling["updates_per_second"] / record["limit_updates_per_second"]
    record.update(command="python " + " ".join(sys.argv), machine=harness.machine_info(), date=harness.now(),
                  versions=harness.tf_versions())
    harness.emit(record, args.out)


if __name__ == "__main__":
    main()
