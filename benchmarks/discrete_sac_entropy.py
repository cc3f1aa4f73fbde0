"""Discrete SAC's target entropy: which fraction of log|A| learns across tasks.

    taskset -c 1 python benchmarks/discrete_sac_entropy.py --tasks Acrobot-v1 CartPole-v1 \\
        --fractions 0.98 0.6 0.3 --seeds 0 --out benchmarks/results/discrete_sac_entropy.jsonl

Trains `kerasrl.SAC` on Discrete-action tasks through the public API only, with
`target_entropy = fraction * log|A|` (the seed's default is fraction 0.98,
Christodoulou 2019), everything else identical for every fraction: hidden
(64, 64) by default, Adam(1e-3) for every network, batch 256, replay 100k,
learning_starts 1000 uniform random steps, one update per env step (so a task's
budget of N env steps is N - learning_starts updates), soft targets tau 0.005,
gamma 0.99, alpha tuned from 1.0, steps_per_execution 50. After training, 10 deterministic evaluation
episodes on a fresh env, seeds from 10_000 + seed.

One JSON line per run on stdout (and appended to --out): task, fraction,
target_entropy (nats), seed, eval mean/std, the last `episode_return` of the
training history (mean of the last 10 training episodes), the final policy
entropy and alpha, the per-epoch episode_return curve, env steps and wall
seconds (fit + evaluation). TensorFlow runs with one intra-op and one inter-op
thread (`--threads`), so `taskset -c K` pins a run to one core.

Budgets per task (env steps, learning_starts included; --steps overrides them all):
CartPole-v1 30k, Acrobot-v1 30k, MountainCar-v0 50k, LunarLander-v3 100k.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BUDGETS = {"CartPole-v1": 30_000, "Acrobot-v1": 30_000, "MountainCar-v0": 50_000, "LunarLander-v3": 100_000}


def run_one(task: str, fraction: float, seed: int, args: argparse.Namespace) -> dict:
    import gymnasium as gym
    import keras
    import numpy as np

    import kerasrl

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    env = gym.make(task)
    n = int(env.action_space.n)
    target_entropy = fraction * math.log(n)
    steps = args.steps or BUDGETS.get(task, 30_000)
    agent = kerasrl.SAC.from_env(env, target_entropy=target_entropy, hidden=tuple(args.hidden),
                                 gamma=args.gamma, tau=args.tau, seed=seed)
    assert agent.discrete, f"{task} has no Discrete action space"
    agent.compile(optimizer=keras.optimizers.Adam(args.lr), steps_per_execution=args.steps_per_execution)
    data = kerasrl.EnvDataset(env, agent, buffer=kerasrl.ReplayBuffer(args.buffer_size), batch_size=args.batch_size,
                              learning_starts=args.learning_starts, seed=seed)
    updates = data.updates_for(steps)
    steps_per_epoch = args.steps_per_epoch
    epochs = updates // steps_per_epoch
    if epochs * steps_per_epoch != updates:
        raise SystemExit(f"{task}: {updates} updates is not a multiple of --steps-per-epoch {steps_per_epoch}")
    start = time.perf_counter()
    history = agent.fit(data, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=0)
    fit_seconds = time.perf_counter() - start
    returns = np.asarray(agent.evaluate_env(gym.make(task), episodes=args.eval_episodes, seed=10_000 + seed))
    h = history.history
    curve = [None if (r is None or not math.isfinite(float(r))) else round(float(r), 1) for r in h["episode_return"]]
    return {
        "kind": "run",
        "task": task,
        "fraction": fraction,
        "target_entropy": round(target_entropy, 4),
        "log_n": round(math.log(n), 4),
        "seed": seed,
        "eval_mean": round(float(returns.mean()), 2),
        "eval_std": round(float(returns.std()), 2),
        "eval_returns": [round(float(r), 1) for r in returns],
        "final_episode_return": curve[-1],
        "final_entropy": round(float(h["entropy"][-1]), 4),
        "final_alpha": float(f"{float(h['alpha'][-1]):.4g}"),
        "episode_return_per_epoch": curve,
        "env_steps": steps,
        "updates": updates,
        "hidden": list(args.hidden),
        "lr": args.lr,
        "batch_size": args.batch_size,
        "learning_starts": args.learning_starts,
        "fit_seconds": round(fit_seconds, 1),
        "wall_seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["Acrobot-v1", "CartPole-v1"])
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.98, 0.6, 0.3],
                        help="target_entropy = fraction * log|A|")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=None, help="env steps per run (default: BUDGETS per task)")
    parser.add_argument("--hidden", nargs="+", type=int, default=[64, 64])
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--buffer-size", type=int, default=100_000)
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--tau", type=float, default=0.005)
    parser.add_argument("--steps-per-epoch", type=int, default=1000)
    parser.add_argument("--steps-per-execution", type=int, default=50)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="TF intra- and inter-op threads")
    parser.add_argument("--out", default=None, help="append the JSON lines to this file")
    args = parser.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    command = "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    for task in args.tasks:
        for fraction in args.fractions:
            for seed in args.seeds:
                line = {**run_one(task, fraction, seed, args), "command": command}
                text = json.dumps(line)
                print(text, flush=True)
                if args.out:
                    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
                    with open(args.out, "a") as f:
                        f.write(text + "\n")


if __name__ == "__main__":
    main()
