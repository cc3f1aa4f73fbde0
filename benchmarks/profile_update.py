"""Where an update's time goes, op type by op type (TensorFlow's profiler).

    python benchmarks/profile_update.py --algo sac --env Pendulum-v1 --out benchmarks/results/profile_update.jsonl

Runs run.py's ceiling setup (the agent at run.py's settings, Keras' compiled
loop with steps_per_execution=50, one fixed batch), traces `--updates` updates
with `tf.profiler.experimental` and reads the trace (`*.xplane.pb`): the time
TensorFlow's threads spent in each op type, per update. Op types are grouped
into matrix products, element-wise and reductions, the optimizer's variable
updates, random numbers and the rest, beside the executor's own time between
ops and the compute threads' idle time; the groups add up to compute threads
x wall time. `busy_threads` is the executor's time over the wall time (2.0
keeps both cores busy). With the matrix products' floor from
arithmetic_limit.py this says what an update spends beside its arithmetic.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as harness  # noqa: E402  (benchmarks/run.py: ALGOS, builders, the ceiling's input)

# Op type -> group (by substring, first match wins); the rest is "other".
GROUPS = (
    ("matmul", ("MatMul", "Einsum", "Conv2D")),
    ("optimizer", ("Assign", "ResourceApply", "ResourceScatter")),
    ("random", ("Random", "StatelessRandom", "RngBitGenerator")),
    ("reading variables", ("ReadVariableOp", "VarHandleOp")),
    ("data and control", ("IteratorGetNext", "While", "Identity", "NoOp", "Const", "Switch", "Merge", "Enter",
                          "Exit", "NextIteration", "LoopCond", "PartitionedCall", "_Recv", "_Send")),
    ("element-wise and reductions", ("Add", "Sub", "Mul", "Div", "Relu", "Tanh", "Exp", "Log", "Sqrt", "Square",
                                     "Maximum", "Minimum", "Sum", "Mean", "Max", "Min", "Neg", "Select",
                                     "Softplus", "Sigmoid", "Cast", "Pow", "Abs", "Greater", "Less", "Equal",
                                     "Reshape", "Transpose", "BiasAdd", "Concat", "Slice", "Pack", "Tile",
                                     "Fill", "Gather", "OneHot", "ArgMax", "ZerosLike", "OnesLike", "Shape",
                                     "BroadcastTo", "Squeeze", "ExpandDims", "Clip", "Stop", "Softmax",
                                     "Rsqrt", "Reciprocal", "Range", "Floor", "Round", "Sign", "Prod", "Any",
                                     "All", "LogicalAnd", "LogicalOr", "LogicalNot")),
)


def group_of(op_type: str) -> str:
    for group, needles in GROUPS:
        if any(n in op_type for n in needles):
            return group
    return "other"


def op_times(logdir: str) -> tuple[dict[str, float], float, int]:
    """From the trace in `logdir`: seconds per op type on TensorFlow's compute
    threads, the seconds those threads spent in the executor (ops included),
    and how many compute threads ran."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    (path,) = glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    totals: dict[str, float] = collections.defaultdict(float)
    executor, threads = 0.0, 0
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            threads += 1
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                seconds = event.duration_ps * 1e-12
                if name == "ExecutorState::Process":  # the executor's span around the ops it runs
                    executor += seconds
                elif ":" in name and "::" not in name:  # an op: "scope/op_name:OpType"
                    totals[name.rsplit(":", 1)[1]] += seconds
    return totals, executor, threads


def profile(algo: str, env_id: str, steps: int, assignments: dict, updates: int) -> dict:
    import tensorflow as tf

    run, _, dataset, settings = harness.on_fixed_batch({"algo": algo, "env": env_id, "steps": steps, "set": assignments})
    agent = run.agent
    spe = 50
    updates = max(spe, updates // spe * spe)
    agent.compile(optimizer=run.make_optimizer(steps), steps_per_execution=spe, **run.compile_kwargs)
    agent.fit(dataset, epochs=1, steps_per_epoch=10 * spe, shuffle=False, verbose=0)  # trace outside the profile
    with tempfile.TemporaryDirectory(prefix="kerasrl-profile-") as logdir:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        agent.fit(dataset, epochs=1, steps_per_epoch=updates, shuffle=False, verbose=0)
        wall = time.perf_counter() - start
        tf.profiler.experimental.stop()
        totals, executor, threads = op_times(logdir)
    per_update = lambda seconds: round(seconds / updates * 1e6, 1)
    groups: dict[str, float] = collections.defaultdict(float)
    for op, seconds in totals.items():
        groups[group_of(op)] += seconds
    ops = sum(totals.values())
    groups["executor bookkeeping"] = executor - ops  # the executor's time between its ops
    groups["idle"] = threads * wall - executor  # compute threads waiting (for the loop, the input, each other)
    top = sorted(totals.items(), key=lambda kv: -kv[1])[:15]
    return {"kind": "update_profile", "algo": algo, "env": env_id, "settings": settings, "updates": updates,
            "compute_threads": threads, "wall_us_per_update": per_update(wall),
            "busy_threads": executor / wall,
            "groups_us_per_update": {g: per_update(t) for g, t in sorted(groups.items(), key=lambda kv: -kv[1])},
            "top_ops_us_per_update": {op: per_update(t) for op, t in top}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.task_arguments(p)
    p.add_argument("--updates", type=int, default=500, help="updates traced")
    p.add_argument("--out", default=None, help="also append the JSON line to this file")
    args = p.parse_args(argv)
    harness._claim_stdout()
    record = profile(args.algo, args.env, args.steps, harness.parse_assignments(args.set, "--set"), args.updates)
    record.update(command="python " + " ".join(sys.argv), machine=harness.machine_info(), date=harness.now(),
                  versions=harness.tf_versions())
    harness.emit(record, args.out)


if __name__ == "__main__":
    main()
