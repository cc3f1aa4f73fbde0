"""Atari on the CPU: replay memory, throughput and a time-boxed DQN run.

    python benchmarks/atari.py memory                      # bytes for 1M stored transitions
    python benchmarks/atari.py train --minutes 20 --seed 0 # DQN on Breakout, returns vs random

`memory` fills a FrameStackReplayBuffer with 1M transitions (frames from a real
Breakout run, repeated) and prints its size. `train` fits a dueling double DQN
with the Nature CNN for the given wall-clock time and prints one JSON line per
epoch (env steps, frames and updates per second, the training episode return)
and a summary against the uniform random policy's return on the same
training-mode environment (first life, clipped rewards).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def memory(args: argparse.Namespace) -> None:
    import kerasrl

    env = kerasrl.envs.make_atari(args.env, n_envs=1)
    obs, _ = env.reset(seed=0)
    frames = []
    for _ in range(2000):  # real frames, reused to reach the capacity
        nxt, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        frames.append((obs, nxt, reward, terminated))
        obs = env.reset()[0] if terminated or truncated else nxt
    buffer = kerasrl.FrameStackReplayBuffer(args.capacity)
    start = time.perf_counter()
    batch = 1000
    for i in range(0, args.capacity, batch):
        chunk = [frames[(i + j) % len(frames)] for j in range(batch)]
        buffer.add(np.stack([c[0] for c in chunk]), np.zeros(batch, np.int64), np.array([c[2] for c in chunk]),
                   np.stack([c[1] for c in chunk]), np.array([c[3] for c in chunk]), env_ids=np.zeros(batch))
    seconds = time.perf_counter() - start
    side = sum(f.nbytes for f in buffer.final_frames.values()) + sum(h.nbytes for h in buffer.head_stacks.values())
    naive = args.capacity * 2 * 4 * 84 * 84
    emit({"kind": "memory", "env": args.env, "transitions": len(buffer), "buffer_bytes": buffer.nbytes + side,
          "buffer_gb": round((buffer.nbytes + side) / 1e9, 3), "two_stacks_per_transition_gb": round(naive / 1e9, 2),
          "max_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3),
          "fill_seconds": round(seconds, 1), "command": "python " + shlex.join(sys.argv)})


def random_returns(env_id: str, episodes: int, seed: int) -> np.ndarray:
    import kerasrl

    env = kerasrl.envs.make_atari(env_id)  # training mode, as the DQN's logged returns
    env.action_space.seed(seed)
    out = []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += reward
            done = terminated or truncated
        out.append(total)
    return np.asarray(out)


def train(args: argparse.Namespace) -> None:
    import keras
    import kerasrl
    from kerasrl import callbacks as rlcb, schedules

    class StopAfter(keras.callbacks.Callback):
        def __init__(self, seconds: float):
            super().__init__()
            self.deadline = time.perf_counter() + seconds

        def on_epoch_end(self, epoch, logs=None):
            if time.perf_counter() > self.deadline:
                self.model.stop_training = True

    class Report(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()
            self.steps0 = self.model.env_dataset.env_steps

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self.start
            steps = self.model.env_dataset.env_steps - self.steps0
            emit({"kind": "epoch", "epoch": epoch, "env_steps": int(logs["env_steps"]),
                  "episode_return": logs["episode_return"], "loss": logs["loss"], "q_mean": logs["q_mean"],
                  "env_steps_per_second": steps / seconds, "frames_per_second": 4 * steps / seconds,
                  "updates_per_second": args.epoch_updates / seconds})

    env = kerasrl.envs.make_atari(args.env, n_envs=args.n_envs)
    agent = kerasrl.DQN.from_env(env, torso="nature_cnn", dueling=True, double=True, seed=args.seed)
    agent.compile(optimizer=keras.optimizers.Adam(1e-4), steps_per_execution=10)
    data = kerasrl.EnvDataset(env, agent, buffer=kerasrl.FrameStackReplayBuffer(args.buffer_size),
                              batch_size=32, learning_starts=args.learning_starts,
                              train_freq=max(1, 4 // args.n_envs),
                              exploration=schedules.Linear(1.0, 0.05, args.exploration_steps), seed=args.seed)
    start = time.perf_counter()
    history = agent.fit(data, epochs=10_000, steps_per_epoch=args.epoch_updates, verbose=0,
                        callbacks=[rlcb.HardTargetUpdate(every=1000), StopAfter(args.minutes * 60), Report()])
    seconds = time.perf_counter() - start
    random = random_returns(args.env, episodes=30, seed=args.seed)
    returns = history.history["episode_return"]
    emit({"kind": "summary", "env": args.env, "seed": args.seed, "minutes": round(seconds / 60, 1),
          "env_steps": data.env_steps, "frames": 4 * data.env_steps, "updates": int(agent.num_gradient_steps.numpy()),
          "env_steps_per_second": data.env_steps / seconds, "updates_per_second": agent.num_gradient_steps.numpy() / seconds,
          "first_epoch_return": returns[0], "best_epoch_return": max(r for r in returns if r == r),
          "final_return": returns[-1], "random_return_mean": float(random.mean()),
          "random_return_std": float(random.std()), "n_envs": args.n_envs,
          "command": "python " + shlex.join(sys.argv)})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["memory", "train"])
    p.add_argument("--env", default="BreakoutNoFrameskip-v4")
    p.add_argument("--capacity", type=int, default=1_000_000, help="memory: transitions to store")
    p.add_argument("--minutes", type=float, default=20.0, help="train: wall-clock budget")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-envs", type=int, default=4)
    p.add_argument("--buffer-size", type=int, default=100_000)
    p.add_argument("--learning-starts", type=int, default=10_000)
    p.add_argument("--exploration-steps", type=int, default=100_000)
    p.add_argument("--epoch-updates", type=int, default=1000)
    args = p.parse_args()
    {"memory": memory, "train": train}[args.mode](args)


if __name__ == "__main__":
    main()
