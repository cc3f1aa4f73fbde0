"""Serving an exported policy: latency and throughput of each runtime against kerasrl's own acting.

    python benchmarks/serving.py --out benchmarks/results/serving.jsonl

For SAC (256x256, Pendulum-v1) and DQN with the Nature CNN (4x84x84 uint8
frames, Breakout's 4 actions), writes the deterministic policy with
`export_policy` in the three formats, then times, in this process:

* `agent.act(obs, deterministic=True)` (kerasrl's numpy acting copy),
* the SavedModel's `serve` (TensorFlow),
* an ONNX Runtime `InferenceSession` (its default threads),
* LiteRT's interpreter (its default XNNPack delegate),

each on one observation (`latency_microseconds`, the median of `--repeats`
loops of `--calls` calls) and on batches of 256 (`throughput_per_second`,
observations per second). Also the file sizes. Prints one JSON line per agent
and runtime (and appends them to --out). Untrained networks: the cost of a
forward pass does not depend on the weights. Run on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from history_costs import median_time  # noqa: E402
from run import _claim_stdout, emit, machine_info  # noqa: E402

FILES = {"tf_saved_model": "policy_savedmodel", "onnx": "policy.onnx", "litert": "policy.tflite"}


def size_bytes(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def runtimes(folder: str) -> dict:
    """A function batch -> actions for each exported file."""
    import onnxruntime
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    saved = tf.saved_model.load(os.path.join(folder, FILES["tf_saved_model"]))
    session = onnxruntime.InferenceSession(os.path.join(folder, FILES["onnx"]))
    name = session.get_inputs()[0].name
    interpreter = Interpreter(model_path=os.path.join(folder, FILES["litert"]))
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    shape = [None]

    def litert(batch):
        if shape[0] != batch.shape:  # resizing is per batch shape, as a server with a fixed batch would do once
            interpreter.resize_tensor_input(inp["index"], batch.shape)
            interpreter.allocate_tensors()
            shape[0] = batch.shape
        interpreter.set_tensor(inp["index"], batch)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])

    return {
        "tf_saved_model": lambda batch: saved.serve(batch).numpy(),
        "onnx": lambda batch: session.run(None, {name: batch})[0],
        "litert": litert,
        "_keep": saved,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300, help="calls per timing loop")
    parser.add_argument("--repeats", type=int, default=5, help="timing loops; the median counts")
    parser.add_argument("--batch", type=int, default=256, help="batch size of the throughput figure")
    parser.add_argument("--out", default=None, help="also append the JSON lines to this file")
    args = parser.parse_args()
    _claim_stdout()

    import gymnasium as gym
    import numpy as np

    import kerasrl

    rng = np.random.default_rng(0)
    pendulum = gym.make("Pendulum-v1")
    breakout = kerasrl.envs.make_atari("BreakoutNoFrameskip-v4")
    cases = {
        "sac_256x256_pendulum": (kerasrl.SAC.from_env(pendulum, hidden=(256, 256), seed=0),
                                 lambda n: rng.uniform(-1, 1, (n, 3)).astype(np.float32)),
        "dqn_nature_cnn_breakout": (kerasrl.DQN.from_env(breakout, torso="nature_cnn", seed=0),
                                    lambda n: rng.integers(0, 256, (n, 4, 84, 84), dtype=np.uint8)),
    }
    for case, (agent, observations) in cases.items():
        with tempfile.TemporaryDirectory() as folder:
            for fmt, name in FILES.items():
                agent.export_policy(os.path.join(folder, name), format=fmt)
            sizes = {fmt: size_bytes(os.path.join(folder, name)) for fmt, name in FILES.items()}
            run = runtimes(folder)
            run["kerasrl_act"] = lambda batch: agent.act(batch, deterministic=True)
            one, many = observations(1), observations(args.batch)
            for runtime in ("kerasrl_act", "tf_saved_model", "onnx", "litert"):
                call = run[runtime]
                np.testing.assert_allclose(np.asarray(call(many), np.float64),
                                           np.asarray(agent.act(many, deterministic=True), np.float64), atol=1e-5)
                call(one)  # warm-up at batch 1
                latency = median_time(lambda: call(one), args.calls, args.repeats)
                call(many)
                per_batch = median_time(lambda: call(many), max(args.calls // 10, 5), args.repeats)
                call(one)  # LiteRT: back to batch 1 outside the timing
                emit({
                    "kind": "serving", "case": case, "runtime": runtime,
                    "latency_microseconds": latency * 1e6,
                    "throughput_per_second": args.batch / per_batch,
                    "batch": args.batch,
                    "file_bytes": sizes.get(runtime),
                    "command": "python benchmarks/serving.py" + (f" --out {args.out}" if args.out else ""),
                    "machine": machine_info(),
                    "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }, args.out)


if __name__ == "__main__":
    main()
