"""On-policy throughput and returns: kerasrl's PPO and A2C against Stable-Baselines3 (and SBX's PPO).

    python benchmarks/on_policy.py --algo ppo --env LunarLander-v3 --steps 1000000 --seeds 0 1 2 --compare sb3 sbx \\
        --out benchmarks/results/ppo_lunar_peers.jsonl
    python benchmarks/on_policy.py --algo ac --env CartPole-v1 --steps 100000 --seeds 0 1 2 --curve-dir curves

`--algo ac` is the one-network actor-critic with Keras' CartPole example's
settings (128-unit torso, Adam 1e-2, gamma 0.99, one episode per update) on
one environment, evaluated after every 20 updates; its lines also give the env
steps of the first evaluation at the task's reward threshold. No peer has it.

Every library gets the same task, budget, vector env (SAME_STEP autoreset, one
process), networks (64-64 tanh, separate policy and value) and rl-zoo's
settings for the task (`SETTINGS`); each run is a fresh process, timed over
its training call, then evaluated on 10 deterministic episodes. Prints one
JSON line per run and a summary line with the medians and the ratios (as
`run.py`'s, so `table.py` prints the README row). With
`--curve-dir`, kerasrl's runs also write run folders for `kerasrl plot`
(evaluations every `--eval-every` env steps, left out of the timing).
`--summarize` runs nothing: it writes the summary of the runs already in
`--out` for `--seeds` (the newest line per library and seed), for seeds run
in separate invocations.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import (CurveLogger, _claim_stdout, emit, log, machine_info, now, parse_assignments,  # noqa: E402
                 peer_module, peer_versions, summary)

# rl-zoo's settings (hyperparams/ppo.yml, a2c.yml); the learning-rate and clip schedules are left constant.
SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "ppo": {
        "CartPole-v1": {"n_envs": 8, "n_steps": 32, "batch_size": 256, "n_epochs": 20, "gamma": 0.98,
                        "gae_lambda": 0.8, "ent_coef": 0.0, "learning_rate": 1e-3, "clip_range": 0.2},
        "LunarLander-v3": {"n_envs": 16, "n_steps": 1024, "batch_size": 64, "n_epochs": 4, "gamma": 0.999,
                           "gae_lambda": 0.98, "ent_coef": 0.01, "learning_rate": 3e-4, "clip_range": 0.2},
    },
    "a2c": {
        "CartPole-v1": {"n_envs": 8, "n_steps": 5, "gamma": 0.99, "gae_lambda": 1.0, "ent_coef": 0.0,
                        "learning_rate": 7e-4},
        "LunarLander-v3": {"n_envs": 8, "n_steps": 5, "gamma": 0.995, "gae_lambda": 1.0, "ent_coef": 1e-5,
                           "learning_rate": 8.3e-4},
    },
}
# PyBullet: rl-zoo's HalfCheetahBulletEnv-v0 settings (hyperparams/ppo.yml and a2c.yml, checked against the
# zoo's files on 2026-12-06) without gSDE, which kerasrl does not have: every library here runs plain Gaussian
# exploration, and each keeps its own default initialisation (orthogonal in kerasrl and SB3, which the zoo
# turns off; SBX's default is not orthogonal), A2C without the zoo's TimeFeatureWrapper. rl-zoo's A2C
# learning rate is linear from 9.6e-4, kept constant; its network is Stable-Baselines3's default (64-64
# tanh), PPO's 256-256 ReLU.
SETTINGS["ppo"]["HalfCheetahBulletEnv-v0"] = {
    "n_envs": 16, "n_steps": 512, "batch_size": 128, "n_epochs": 20, "gamma": 0.99, "gae_lambda": 0.9,
    "ent_coef": 0.0, "learning_rate": 3e-5, "clip_range": 0.4, "max_grad_norm": 0.5, "vf_coef": 0.5,
    "normalize": True, "hidden": [256, 256], "activation": "relu", "log_std_init": -2.0}
SETTINGS["a2c"]["HalfCheetahBulletEnv-v0"] = {
    "n_envs": 4, "n_steps": 8, "gamma": 0.99, "gae_lambda": 0.9, "ent_coef": 0.0, "learning_rate": 9.6e-4,
    "max_grad_norm": 0.5, "vf_coef": 0.4, "normalize_advantage": False, "normalize": True, "log_std_init": -2.0}
SETTINGS["ac"] = {"CartPole-v1": {"n_envs": 1, "hidden": [128], "gamma": 0.99, "learning_rate": 1e-2,
                                  "updates_per_epoch": 20}}
AGENT_KEYS = ("n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda", "ent_coef", "clip_range", "max_grad_norm",
              "vf_coef", "normalize_advantage", "log_std_init")
NETWORK = {"hidden": [64, 64], "activation": "tanh", "normalize": False}  # unless a task's settings say otherwise


def settings_for(algo: str, env_id: str, overrides: dict) -> dict:
    if env_id not in SETTINGS[algo]:
        raise SystemExit(f"no settings for {algo} on {env_id}; known: {', '.join(SETTINGS[algo])}")
    return {**(NETWORK if algo != "ac" else {}), **SETTINGS[algo][env_id], **overrides}


def register_bullet(env_id: str) -> None:
    """Registers the PyBullet tasks without importing kerasrl (and TensorFlow) into a peer's process."""
    if "Bullet" not in env_id:
        return
    import importlib.util

    import gymnasium as gym

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kerasrl", "envs", "bullet.py")
    spec = importlib.util.spec_from_file_location("kerasrl_bullet_envs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    robot_env, threshold = module.BULLET_ENVS[env_id]
    gym.register(env_id, entry_point=module.BulletEnv, kwargs={"robot_env": robot_env},
                 max_episode_steps=module.MAX_EPISODE_STEPS, reward_threshold=threshold)


def vector_env(env_id: str, n_envs: int) -> Any:
    import gymnasium as gym

    return gym.make_vec(env_id, num_envs=n_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})


def evaluate(act: Any, env_id: str, episodes: int, seed: int) -> list[float]:
    import gymnasium as gym

    env, returns = gym.make(env_id), []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed if episode == 0 else None)
        done, total = False, 0.0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


def run_kerasrl(job: dict) -> dict:
    import keras
    import numpy as np
    import kerasrl
    from kerasrl.training import fit_plan, plan_epochs

    s, seed = job["settings"], job["seed"]
    if job["algo"] == "ac":
        return run_actor_critic(job)
    cls = {"ppo": kerasrl.PPO, "a2c": kerasrl.A2C}[job["algo"]]
    env = vector_env(job["env"], s["n_envs"])
    takes = inspect.signature(cls.__init__).parameters
    agent = cls.from_env(env, seed=seed, hidden=tuple(s["hidden"]), activation=s["activation"],
                         normalize_observations=s["normalize"], normalize_rewards=s["normalize"],
                         **{k: v for k, v in s.items() if k in AGENT_KEYS and k in takes})
    optimizer = agent.default_optimizer()
    agent.compile(optimizer=type(optimizer).from_config({**optimizer.get_config(), "learning_rate": s["learning_rate"]}))
    data = kerasrl.RolloutDataset(env, agent, seed=seed)
    per_rollout = data.batches_per_rollout()
    rollouts = -(-job["steps"] // (s["n_steps"] * s["n_envs"]))
    # Epochs of whole rollouts, about 1000 train steps each (the fit loop's per-epoch cost stays small),
    # or about eval_every env steps each when a learning curve is drawn.
    per_epoch = max(1000 // per_rollout, 1)
    callbacks, curve = [], None
    if job.get("curve_dir"):
        curve = CurveLogger(job, s, data)
        callbacks = curve.callbacks(append=True)
        per_epoch = max(job["eval_every"] // (s["n_steps"] * s["n_envs"]), 1)
    start = time.perf_counter()
    fit_plan(agent, data, plan_epochs(rollouts * per_rollout, per_epoch * per_rollout), callbacks=callbacks)
    seconds = time.perf_counter() - start - (curve.eval_seconds if curve else 0.0)
    returns = evaluate(lambda obs: agent.act(obs, deterministic=True), job["env"], job["eval_episodes"],
                       10_000 + seed)
    return record(job, "kerasrl", data.env_steps, seconds, returns,
                  {"tensorflow": __import__("tensorflow").__version__, "keras": keras.__version__,
                   "kerasrl": kerasrl.__version__, "updates": int(agent.num_gradient_steps.numpy()),
                   "numpy": np.__version__})


def run_actor_critic(job: dict) -> dict:
    """The actor-critic of Keras' example: whole episodes, one update each, until `steps` env steps."""
    import gymnasium as gym
    import keras
    import numpy as np
    import kerasrl
    from kerasrl.training import StopAtEnvSteps

    s, seed = job["settings"], job["seed"]
    env = gym.make(job["env"])
    agent = kerasrl.ActorCritic.from_env(env, seed=seed, hidden=tuple(s["hidden"]), gamma=s["gamma"])
    # One update per call (as `kerasrl train ac`), so the run stops at the budget's episode.
    agent.compile(optimizer=keras.optimizers.Adam(s["learning_rate"]), steps_per_execution=1)
    data = kerasrl.RolloutDataset(env, agent, episodes_per_batch=1, seed=seed)
    reached: list[int] = []  # env steps at the evaluations that scored the reward threshold
    threshold = env.spec.reward_threshold

    class FirstAtThreshold(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if (logs or {}).get("eval_return", -np.inf) >= threshold:
                reached.append(data.env_steps)

    callbacks, curve = [StopAtEnvSteps(data, job["steps"])], None
    if job.get("curve_dir"):
        curve = CurveLogger(job, s, data)
        callbacks = [*curve.callbacks(), FirstAtThreshold(), *callbacks]
    start = time.perf_counter()
    agent.fit(data, epochs=job["steps"], steps_per_epoch=s["updates_per_epoch"], callbacks=callbacks, verbose=0)
    seconds = time.perf_counter() - start - (curve.eval_seconds if curve else 0.0)
    returns = evaluate(lambda obs: agent.act(obs, deterministic=True), job["env"], job["eval_episodes"],
                       10_000 + seed)
    result = record(job, "kerasrl", data.env_steps, seconds, returns,
                    {"tensorflow": __import__("tensorflow").__version__, "keras": keras.__version__,
                     "kerasrl": kerasrl.__version__, "updates": int(agent.num_gradient_steps.numpy())})
    result.update(reward_threshold=threshold, first_env_steps_at_threshold=reached[0] if reached else None)
    return result


def run_peer(job: dict) -> dict:
    lib = job["job"]
    if lib == "sbx" and "tensorflow" not in sys.modules:
        sys.modules["tensorflow"] = None  # as in run.py: a JAX user has no TensorFlow
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    s, seed = job["settings"], job["seed"]
    register_bullet(job["env"])
    module = peer_module(lib)
    cls = getattr(module, job["algo"].upper())
    kwargs = {k: v for k, v in s.items() if k in AGENT_KEYS and k != "log_std_init"}
    if job["algo"] == "a2c":
        kwargs.pop("batch_size", None), kwargs.pop("n_epochs", None), kwargs.pop("clip_range", None)
    hidden = list(s["hidden"])
    if lib == "sb3":
        import torch

        policy_kwargs = {"net_arch": dict(pi=hidden, vf=hidden),
                         "activation_fn": {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[s["activation"]]}
    else:
        import flax.linen

        policy_kwargs = {"net_arch": hidden, "activation_fn": getattr(flax.linen, s["activation"])}
    if "log_std_init" in s:
        policy_kwargs["log_std_init"] = s["log_std_init"]
    env = make_vec_env(job["env"], n_envs=s["n_envs"], seed=seed)
    if s["normalize"]:
        env = VecNormalize(env, gamma=s["gamma"])
    model = cls("MlpPolicy", env, learning_rate=s["learning_rate"], policy_kwargs=policy_kwargs, seed=seed,
                verbose=0, **kwargs)
    start = time.perf_counter()
    model.learn(total_timesteps=job["steps"])
    seconds = time.perf_counter() - start
    if s["normalize"]:
        env.training = False  # evaluation normalises with the statistics as training left them
    scale = env.normalize_obs if s["normalize"] else (lambda obs: obs)
    returns = evaluate(lambda obs: model.predict(scale(obs), deterministic=True)[0], job["env"],
                       job["eval_episodes"], 10_000 + seed)
    return record(job, lib, int(model.num_timesteps), seconds, returns, peer_versions(lib, model))


def record(job: dict, lib: str, env_steps: int, seconds: float, returns: list[float], versions: dict) -> dict:
    import numpy as np

    return {"lib": lib, "algo": job["algo"], "env": job["env"], "steps": job["steps"], "seed": job["seed"],
            "steps_per_second": env_steps / seconds, "fit_seconds": seconds, "env_steps": env_steps,
            "eval_mean": float(np.mean(returns)), "eval_std": float(np.std(returns)),
            "eval_returns": [round(r, 3) for r in returns], "eval_episodes": job["eval_episodes"],
            "settings": job["settings"], "versions": versions, "machine": machine_info(), "date": now()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", choices=sorted(SETTINGS), default="ppo")
    p.add_argument("--env", default="LunarLander-v3")
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--compare", nargs="*", choices=("sb3", "sbx"), default=[])
    p.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="override a setting of the task")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--curve-dir", default=None,
                   help="also write kerasrl's run folders (progress.csv with eval_return) for `kerasrl plot`")
    p.add_argument("--eval-every", type=int, default=20_000, help="env steps between curve evaluations")
    p.add_argument("--curve-eval-episodes", type=int, default=5, help="episodes per curve evaluation")
    p.add_argument("--out", default=None, help="also append the JSON lines to this file")
    p.add_argument("--summarize", action="store_true",
                   help="summarise the runs for --seeds already in --out instead of running")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    _claim_stdout()
    if args.worker:
        job = json.loads(args.worker)
        emit(run_kerasrl(job) if job["job"] == "kerasrl" else run_peer(job))
        return
    settings = settings_for(args.algo, args.env, parse_assignments(args.set, "--set"))
    if args.algo == "a2c" and "sbx" in args.compare:
        raise SystemExit("SBX has no A2C; compare with sb3 only.")
    if args.algo == "ac" and args.compare:
        raise SystemExit("No peer has the one-network actor-critic; run --algo ac without --compare.")
    libs = ["kerasrl", *args.compare]
    if args.summarize:
        records = recorded_runs(args)
    else:
        records = []
        for seed in args.seeds:
            for lib in libs:
                job = {"job": lib, "algo": args.algo, "env": args.env, "steps": args.steps, "seed": seed,
                       "settings": settings, "eval_episodes": args.eval_episodes, "curve_dir": args.curve_dir,
                       "eval_every": args.eval_every, "curve_eval_episodes": args.curve_eval_episodes}
                log(f"{lib} {args.algo} {args.env} seed={seed} steps={args.steps}")
                proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(job)],
                                      stdout=subprocess.PIPE, text=True)
                lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
                if proc.returncode != 0 or not lines:
                    raise SystemExit(f"{lib} seed {seed} failed with exit status {proc.returncode}")
                records.append(json.loads(lines[-1]))
                emit(records[-1], args.out)
    emit(summary(records, None, args), args.out)


def recorded_runs(args: argparse.Namespace) -> list[dict]:
    """The newest run line per (library, seed) in `--out` for this task, budget and `--seeds`, by seed."""
    if not args.out or not os.path.exists(args.out):
        raise SystemExit("--summarize reads the runs from --out; give an existing file.")
    newest = {}
    with open(args.out) as f:
        for line in f:
            r = json.loads(line)
            if (r.get("kind") is None and (r.get("algo"), r.get("env"), r.get("steps")) ==
                    (args.algo, args.env, args.steps) and r["seed"] in args.seeds):
                newest[r["lib"], r["seed"]] = r
    missing = [f"{lib} seed {seed}" for seed in args.seeds for lib in ["kerasrl", *args.compare]
               if (lib, seed) not in newest]
    if missing:
        raise SystemExit(f"{args.out} has no run for {', '.join(missing)}")
    return [newest[lib, seed] for seed in args.seeds for lib in ["kerasrl", *args.compare]]


if __name__ == "__main__":
    main()
