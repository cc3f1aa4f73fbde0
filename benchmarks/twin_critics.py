"""Twin critics as one batched computation: does it pay on this CPU?

    python benchmarks/twin_critics.py --hidden 400 300 --threads 1 --out benchmarks/results/twin_critics.jsonl
    python benchmarks/twin_critics.py --hidden 256 256 --threads 2

Times the critics' half of a TD3/SAC update (forward, mean squared error to a
target, gradient, Adam) two ways, in one compiled loop of `--updates` steps
each, alternating `--repeats` times:

- `separate`: two Keras MLPs called one after the other (what kerasrl does);
- `stacked`: the same two MLPs' kernels stacked per layer, `(2, in, out)`, so
  each layer is one batched matrix product for both critics (the idea in
  issue 17: fewer ops for the executor, and two independent products that
  two threads can share without splitting one).

Both compute the same values (the line gives the largest difference). Prints
one JSON line per configuration with the milliseconds per update of each
repeat and their medians.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import _claim_stdout, configure_threads, emit, machine_info, now  # noqa: E402  (benchmarks/run.py)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, nargs="+", default=[400, 300])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--input-dim", type=int, default=4, help="observation + action (Pendulum-v1: 3 + 1)")
    p.add_argument("--threads", type=int, default=0, help="TensorFlow intra- and inter-op threads (0: its default)")
    p.add_argument("--updates", type=int, default=300)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=None, help="also append the JSON line to this file")
    args = p.parse_args(argv)
    _claim_stdout()

    import numpy as np
    import tensorflow as tf

    configure_threads({"intra_op_threads": args.threads, "inter_op_threads": args.threads})
    import keras
    from keras import ops

    from kerasrl.networks import mlp

    critics = [mlp(args.input_dim, args.hidden, 1, "relu", name=f"critic{i + 1}", seed=i) for i in range(2)]
    variables = [v for critic in critics for v in critic.trainable_variables]
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(variables)
    x = tf.random.stateless_normal((args.batch_size, args.input_dim), seed=(0, 1))
    y = tf.random.stateless_normal((args.batch_size,), seed=(0, 2))

    def separate(x: tf.Tensor) -> list:
        return [ops.squeeze(critic(x), -1) for critic in critics]

    def stacked(x: tf.Tensor) -> list:
        h = x[None]
        for layers in zip(*(critic.layers for critic in critics)):
            kernel = ops.stack([layer.kernel.value for layer in layers])
            bias = ops.stack([layer.bias.value for layer in layers])[:, None, :]
            h = layers[0].activation(ops.matmul(h, kernel) + bias)
        return [ops.squeeze(q, -1) for q in ops.unstack(h)]

    def loop(q_values: Callable[[tf.Tensor], list]) -> Callable[[tf.Tensor], tf.Tensor]:
        @tf.function(autograph=False)
        def run(n: tf.Tensor) -> tf.Tensor:
            def body(i: tf.Tensor) -> tuple:
                with tf.GradientTape() as tape:
                    loss = sum(ops.mean(ops.square(q - y)) for q in q_values(x))
                optimizer.apply(tape.gradient(loss, variables), variables)
                return (i + 1,)
            return tf.while_loop(lambda i: i < n, body, (tf.constant(0),), parallel_iterations=1)
        return run

    difference = max(float(ops.max(ops.abs(a - b))) for a, b in zip(separate(x), stacked(x)))
    runs = {"separate": loop(separate), "stacked": loop(stacked)}
    for run in runs.values():
        run(tf.constant(10))  # trace and warm up
    ms: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run(tf.constant(args.updates))
            ms[name].append(round((time.perf_counter() - start) / args.updates * 1e3, 4))
    medians = {name: float(np.median(values)) for name, values in ms.items()}
    emit({"kind": "twin_critics", "hidden": args.hidden, "batch_size": args.batch_size, "input_dim": args.input_dim,
          "threads": args.threads, "updates": args.updates, "ms_per_update": ms, "median_ms": medians,
          "stacked_over_separate": round(medians["stacked"] / medians["separate"], 3),
          "max_abs_difference": difference, "machine": machine_info(), "date": now(),
          "command": "python " + " ".join(sys.argv)}, args.out)


if __name__ == "__main__":
    main()
