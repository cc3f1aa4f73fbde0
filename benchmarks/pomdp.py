"""Memory on partially observed tasks: LSTM-TD3 against TD3 and TD3 over stacked observations.

    python benchmarks/pomdp.py --env Pendulum-v1 --kind remove_velocity --steps 50000 --seeds 0 1 2 \\
        --out benchmarks/results/pomdp_pendulum.jsonl --runs runs/pomdp-pendulum
    python -m kerasrl plot runs/pomdp-pendulum/* -o pomdp_pendulum.png

Agents (`--agents`), all with the LSTM-TD3 paper's TD3 settings (batch 100,
Adam 1e-3, Gaussian exploration noise 0.1, target noise 0.2 clipped at 0.5,
policy delay 2, tau 0.005, gamma 0.99):

* `lstm_td3`: `kerasrl.LSTMTD3` with its defaults (history 5; memory Dense
  128 -> LSTM 128, features 128-128, combination 128);
* `td3`: `kerasrl.TD3` (256, 256) on the partially observed task as it is;
* `td3_stack`: the same TD3 over the last `--history-length` observations
  (gymnasium's `FrameStackObservation`, flattened by the MLP).

The agents take turns seed by seed, each run in a fresh process. Each run
evaluates the deterministic policy every `--eval-every` env steps (5
episodes) into `<runs>/<agent>-s<seed>/progress.csv` (for `kerasrl plot`), and
10 episodes at the end (seeded 10000 + seed). stdout carries one JSON line per
run and a summary (mean, min and max of the final evaluations per agent).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

AGENTS = ("lstm_td3", "td3", "td3_stack")
PAPER = {"batch_size": 100, "learning_rate": 1e-3, "noise_std": 0.1, "target_noise": 0.2, "target_noise_clip": 0.5,
         "policy_delay": 2, "tau": 0.005, "gamma": 0.99, "buffer_size": 1_000_000, "learning_starts": 1000}


def make_env(job: dict):
    import gymnasium as gym
    from kerasrl.envs import pomdp

    env = pomdp.make(job["env"], job["kind"])
    if job["agent"] == "td3_stack":
        env = gym.wrappers.FrameStackObservation(env, job["history_length"])
    return env


def run(job: dict) -> dict:
    import keras
    import numpy as np
    import kerasrl
    from kerasrl import callbacks as rlcb, noise
    from kerasrl.training import EVAL_SEED_OFFSET, fit_plan, plan_epochs

    s, seed = PAPER, job["seed"]
    env = make_env(job)
    common = dict(gamma=s["gamma"], tau=s["tau"], policy_delay=s["policy_delay"], target_noise=s["target_noise"],
                  target_noise_clip=s["target_noise_clip"], seed=seed)
    if job["agent"] == "lstm_td3":
        agent = kerasrl.LSTMTD3.from_env(env, history_length=job["history_length"], **common)
    else:
        agent = kerasrl.TD3.from_env(env, hidden=(256, 256), **common)
    agent.compile(optimizer=keras.optimizers.Adam(s["learning_rate"]))
    data = kerasrl.EnvDataset(env, agent, buffer=kerasrl.ReplayBuffer(s["buffer_size"], seed=seed,
                                                                      history_length=agent.history_length),
                              batch_size=s["batch_size"], learning_starts=s["learning_starts"],
                              action_noise=noise.Gaussian(s["noise_std"]), seed=seed)
    folder = Path(job["runs"]) / f"{job['agent']}-s{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "progress.csv").unlink(missing_ok=True)
    (folder / "config.json").write_text(json.dumps(
        {"algo": job["agent"], "env": f"{job['env']} {job['kind']}", "seed": seed, **job}))
    eval_seed = EVAL_SEED_OFFSET + seed
    callbacks = [rlcb.SoftTargetUpdate(tau=s["tau"]),
                 rlcb.EvalCallback(make_env(job), episodes=5, seed=eval_seed),
                 keras.callbacks.CSVLogger(str(folder / "progress.csv"), append=True)]
    updates = data.updates_for(job["steps"], from_start=True)
    start = time.perf_counter()
    fit_plan(agent, data, plan_epochs(updates, job["eval_every"]), callbacks=callbacks)
    seconds = time.perf_counter() - start
    returns = agent.evaluate_env(make_env(job), episodes=10, seed=eval_seed)
    return {"agent": job["agent"], "env": job["env"], "kind": job["kind"], "steps": job["steps"], "seed": seed,
            "eval_mean": float(np.mean(returns)), "eval_returns": [round(float(r), 2) for r in returns],
            "env_steps": int(data.env_steps), "updates": int(agent.num_gradient_steps.numpy()),
            "fit_seconds": seconds, "steps_per_second": data.env_steps / seconds,
            "history_length": job["history_length"], "settings": PAPER, "run_folder": str(folder),
            "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--kind", default="remove_velocity")
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--agents", nargs="+", choices=AGENTS, default=list(AGENTS))
    parser.add_argument("--history-length", type=int, default=5)
    parser.add_argument("--eval-every", type=int, default=5000, help="env steps between evaluations")
    parser.add_argument("--runs", default="runs/pomdp", help="folder of the run folders (progress.csv)")
    parser.add_argument("--out", default=None, help="JSON lines file to append to")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run(json.loads(args.worker))))
        return
    command = "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))
    records = []
    for seed in args.seeds:
        for agent in args.agents:
            job = {"agent": agent, "env": args.env, "kind": args.kind, "steps": args.steps, "seed": seed,
                   "history_length": args.history_length, "eval_every": args.eval_every, "runs": args.runs}
            print(f"[pomdp] {agent} seed={seed}", file=sys.stderr, flush=True)
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(job)],
                                 stdout=subprocess.PIPE, text=True, check=True).stdout
            record = json.loads(out.strip().splitlines()[-1])
            record["command"] = command
            records.append(record)
            emit(record, args.out)
    summary = {"kind": "summary", "env": args.env, "pomdp": args.kind, "steps": args.steps, "seeds": args.seeds,
               "command": command}
    for agent in args.agents:
        finals = [r["eval_mean"] for r in records if r["agent"] == agent]
        summary[agent] = {"eval_mean": sum(finals) / len(finals), "min": min(finals), "max": max(finals),
                          "per_seed": finals}
    emit(summary, args.out)


def emit(record: dict, out: str | None) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
