"""Benchmark harness: kerasrl against its own ceiling and (optionally) its peers,
Stable-Baselines3 (PyTorch) and SBX (Stable-Baselines in JAX).

    python benchmarks/run.py --algo sac --env Pendulum-v1 --steps 20000 --seeds 0 1 2 --compare sb3 sbx

Prints JSON lines on stdout (and appends them to --out): one per training run,
one with the ceiling (the same agent's updates on an in-memory batch, no
environment; measured beside each kerasrl run and averaged) and a summary. The
libraries take turns seed by seed (kerasrl, then each peer), so a slow or fast
stretch of the machine falls on all of them; the summary compares medians and
shows each library's range.
Everything else (TF/absl logs, warnings) goes to stderr. Each run executes in a
fresh Python process by default, so every run pays the same start-up and
compilation costs and torch or JAX never shares a process with TensorFlow;
`--in-process` runs everything in this process instead (not with SBX).

New algorithms register one entry in `ALGOS`: a kerasrl builder, a peer
builder (SB3's API, which SBX shares) and their shared default settings.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_JSON_OUT = None  # the real stdout; fd 1 itself points at stderr (see _claim_stdout)


# ---------------------------------------------------------------- registry
@dataclass
class KerasrlRun:
    """What a kerasrl builder returns: an uncompiled agent and how to train it."""

    agent: Any
    optimizer: Any  # a keras optimizer (compile gives each network a copy), or a function of the run's updates
    dataset_kwargs: dict  # EnvDataset arguments (batch_size, learning_starts, ...)
    callbacks: list = field(default_factory=list)
    compile_kwargs: dict = field(default_factory=dict)

    def make_optimizer(self, updates: int) -> Any:
        return self.optimizer(updates) if callable(self.optimizer) else self.optimizer


class Algo(NamedTuple):
    kerasrl: Callable[[Any, int, dict], KerasrlRun]  # (env, seed, settings) -> KerasrlRun
    peer: Callable[[Any, int, dict, str], Any] | None  # (env, seed, settings, "sb3" | "sbx") -> an SB3 or SBX model
    defaults: dict
    env_defaults: dict = {}  # env id -> settings overriding `defaults` (rl-zoo's per-env tuning)

    def settings(self, env_id: str, steps: int, overrides: dict | None = None) -> dict:
        return {**self.defaults, **self.env_defaults.get(env_id, {}), **(overrides or {}), "steps": steps}


# rl-zoo's SAC settings (hyperparams/sac.yml), shared by both libraries.
SAC_DEFAULTS = {
    "net_arch": [256, 256],
    "learning_rate": 1e-3,
    "buffer_size": 1_000_000,
    "learning_starts": 100,
    "batch_size": 256,
    "gamma": 0.99,
    "tau": 0.005,
    "train_freq": 1,
    "gradient_steps": 1,
    "ent_coef": "auto",
    "dtype": "float32",  # kerasrl only: the agent's dtype policy ("mixed_bfloat16": bfloat16 hidden layers)
}


def replay_kwargs(s: dict, seed: int, buffer: Any = None, **extra: Any) -> dict:
    """EnvDataset arguments from the rl-zoo replay and collection settings every algorithm shares."""
    import kerasrl

    if buffer is None:
        buffer = kerasrl.ReplayBuffer(s["buffer_size"], seed=seed)
    return dict(buffer=buffer, batch_size=s["batch_size"],
                learning_starts=s["learning_starts"], train_freq=s["train_freq"],
                gradient_steps=s["gradient_steps"], **extra)


PEERS = {"sb3": "stable_baselines3", "sbx": "sbx"}  # --compare name -> the module with SB3's API


def peer_module(lib: str) -> Any:
    return importlib.import_module(PEERS[lib])


def kerasrl_sac(env: Any, seed: int, s: dict) -> KerasrlRun:
    import keras
    import kerasrl

    agent = kerasrl.SAC.from_env(env, hidden=s["net_arch"], gamma=s["gamma"], tau=s["tau"],
                                 alpha=s["ent_coef"], dtype=s["dtype"], seed=seed)
    return KerasrlRun(
        agent=agent,
        optimizer=keras.optimizers.Adam(s["learning_rate"]),
        dataset_kwargs=replay_kwargs(s, seed),
    )


def peer_sac(env: Any, seed: int, s: dict, lib: str) -> Any:
    return peer_module(lib).SAC("MlpPolicy", env, learning_rate=s["learning_rate"], buffer_size=s["buffer_size"],
               learning_starts=s["learning_starts"], batch_size=s["batch_size"], tau=s["tau"],
               gamma=s["gamma"], train_freq=s["train_freq"], gradient_steps=s["gradient_steps"],
               ent_coef=s["ent_coef"], policy_kwargs=dict(net_arch=list(s["net_arch"])),
               seed=seed, verbose=0)


# rl-zoo's DQN settings (hyperparams/dqn.yml). SB3 counts target_update_interval
# and the exploration fraction in env steps; kerasrl's HardTargetUpdate counts
# gradient steps, so the builders convert.
DQN_DEFAULTS = {
    "net_arch": [256, 256],
    "learning_rate": 1e-4,
    "buffer_size": 1_000_000,
    "learning_starts": 100,
    "batch_size": 32,
    "gamma": 0.99,
    "train_freq": 4,
    "gradient_steps": 1,
    "target_update_interval": 10_000,
    "exploration_fraction": 0.1,
    "exploration_final_eps": 0.05,
    "max_grad_norm": 10.0,
    "tau": 1.0,  # target blend per target update (1.0 = copy)
    "n_steps": 1,  # n-step returns; "episode" (kerasrl only): discounted returns to the episode's end
    "learning_rate_final": None,  # a number: the learning rate decays linearly to it over the budget
    "double": True,  # kerasrl only (SB3 has plain DQN); the networks are the same size
    "dueling": False,  # kerasrl only
    "dtype": "float32",  # kerasrl only: the agent's dtype policy
    "prioritized": False,  # kerasrl only: PrioritizedReplayBuffer(alpha=0.6, beta 0.4 -> 1 over the budget)
}
DQN_ENV_DEFAULTS = {
    "CartPole-v1": {"learning_rate": 2.3e-3, "batch_size": 64, "buffer_size": 100_000, "learning_starts": 1000,
                    "target_update_interval": 10, "train_freq": 256, "gradient_steps": 128,
                    "exploration_fraction": 0.16, "exploration_final_eps": 0.04},
    "LunarLander-v3": {"learning_rate": 6.3e-4, "batch_size": 128, "buffer_size": 50_000, "learning_starts": 0,
                       "target_update_interval": 250, "train_freq": 4, "gradient_steps": 4,
                       "exploration_fraction": 0.12, "exploration_final_eps": 0.1},
}


def kerasrl_dqn(env: Any, seed: int, s: dict) -> KerasrlRun:
    import keras
    import kerasrl
    from kerasrl import callbacks as rlcb, schedules

    agent = kerasrl.DQN.from_env(env, hidden=s["net_arch"], gamma=s["gamma"], double=s["double"],
                                 dueling=s["dueling"], max_grad_norm=s["max_grad_norm"], dtype=s["dtype"],
                                 seed=seed)
    # SB3 updates the target every target_update_interval env steps, but only
    # gradient steps move the online network: the update lands once per round
    # of gradient_steps updates, or every (interval / train_freq) rounds.
    rounds = max(1, s["target_update_interval"] // s["train_freq"])
    exploration = schedules.Linear(1.0, s["exploration_final_eps"],
                                   max(1, int(s["exploration_fraction"] * s["steps"])))

    def optimizer(updates: int) -> keras.optimizers.Optimizer:
        if s["learning_rate_final"] is None:
            return keras.optimizers.Adam(s["learning_rate"])
        # Linear over the run's updates, like SB3's progress-based schedules.
        return keras.optimizers.Adam(keras.optimizers.schedules.PolynomialDecay(
            s["learning_rate"], max(1, updates), s["learning_rate_final"]))

    replay = dict(n_step=s["n_steps"], seed=seed)
    if s["prioritized"]:
        buffer = kerasrl.PrioritizedReplayBuffer(s["buffer_size"], alpha=0.6,
                                                 beta=schedules.Linear(0.4, 1.0, s["steps"]), **replay)
    else:
        buffer = kerasrl.ReplayBuffer(s["buffer_size"], **replay)
    return KerasrlRun(
        agent=agent,
        optimizer=optimizer,
        dataset_kwargs=replay_kwargs(s, seed, buffer, exploration=exploration),
        callbacks=[rlcb.TargetUpdate(s["tau"], every=rounds * s["gradient_steps"])],
    )


def peer_dqn(env: Any, seed: int, s: dict, lib: str) -> Any:
    n_steps = s["n_steps"]
    if n_steps == "episode":
        log(f"{lib}'s DQN has no episode returns: it runs 1-step returns (n_steps=1)")
        n_steps = 1
    learning_rate = s["learning_rate"]
    if s["learning_rate_final"] is not None:  # SB3 schedules take the remaining progress, 1 -> 0
        if lib == "sbx":
            log("SBX's DQN keeps its first learning rate (its optimizer takes no schedule)")
        start, final = s["learning_rate"], s["learning_rate_final"]
        learning_rate = lambda remaining: final + (start - final) * remaining
    clipping = {"max_grad_norm": s["max_grad_norm"]}
    if lib == "sbx":
        log("SBX's DQN has no gradient clipping: max_grad_norm is not applied")
        clipping = {}
    return peer_module(lib).DQN("MlpPolicy", env, learning_rate=learning_rate, buffer_size=s["buffer_size"],
               learning_starts=s["learning_starts"], batch_size=s["batch_size"], gamma=s["gamma"],
               train_freq=s["train_freq"], gradient_steps=s["gradient_steps"],
               target_update_interval=s["target_update_interval"], tau=s["tau"], n_steps=n_steps,
               exploration_fraction=s["exploration_fraction"], exploration_final_eps=s["exploration_final_eps"],
               policy_kwargs=dict(net_arch=list(s["net_arch"])), seed=seed, verbose=0, **clipping)


# rl-zoo's TD3 and DDPG settings (hyperparams/td3.yml, ddpg.yml: Pendulum-v1,
# HalfCheetahBulletEnv-v0), with Gaussian exploration noise of noise_std.
TD3_DEFAULTS = {
    "net_arch": [400, 300],
    "learning_rate": 1e-3,
    "buffer_size": 200_000,
    "learning_starts": 10_000,
    "batch_size": 256,
    "gamma": 0.98,
    "tau": 0.005,
    "train_freq": 1,
    "gradient_steps": 1,
    "noise_std": 0.1,
    "policy_delay": 2,  # TD3 only: DDPG updates its actor every step
    "target_noise": 0.2,
    "target_noise_clip": 0.5,
    "dtype": "float32",  # kerasrl only: the agent's dtype policy
}
# SAC on HalfCheetahBulletEnv-v0 (rl-zoo's sac.yml without gSDE and the time-feature wrapper).
SAC_ENV_DEFAULTS = {
    "HalfCheetahBulletEnv-v0": {"net_arch": [400, 300], "learning_rate": 7.3e-4, "buffer_size": 300_000,
                                "learning_starts": 10_000, "gamma": 0.98, "tau": 0.02, "train_freq": 8,
                                "gradient_steps": 8},
}


def kerasrl_td3(env: Any, seed: int, s: dict, ddpg: bool = False) -> KerasrlRun:
    import keras
    import kerasrl
    from kerasrl import callbacks as rlcb, noise

    common = dict(hidden=s["net_arch"], gamma=s["gamma"], tau=s["tau"], dtype=s["dtype"], seed=seed)
    if ddpg:
        agent = kerasrl.DDPG.from_env(env, **common)
    else:
        agent = kerasrl.TD3.from_env(env, policy_delay=s["policy_delay"], target_noise=s["target_noise"],
                                     target_noise_clip=s["target_noise_clip"], **common)
    return KerasrlRun(
        agent=agent,
        optimizer=keras.optimizers.Adam(s["learning_rate"]),
        dataset_kwargs=replay_kwargs(s, seed, action_noise=noise.Gaussian(s["noise_std"])),
        callbacks=[rlcb.SoftTargetUpdate(tau=s["tau"])],
    )


def peer_td3(env: Any, seed: int, s: dict, lib: str, ddpg: bool = False) -> Any:
    import numpy as np
    from stable_baselines3.common.noise import NormalActionNoise  # SBX uses SB3's noise classes

    peer = peer_module(lib)
    n = env.action_space.shape[-1]
    common = dict(learning_rate=s["learning_rate"], buffer_size=s["buffer_size"], learning_starts=s["learning_starts"],
                  batch_size=s["batch_size"], tau=s["tau"], gamma=s["gamma"], train_freq=s["train_freq"],
                  gradient_steps=s["gradient_steps"], policy_kwargs=dict(net_arch=list(s["net_arch"])),
                  action_noise=NormalActionNoise(np.zeros(n), s["noise_std"] * np.ones(n)), seed=seed, verbose=0)
    if lib == "sbx":  # SBX's DDPG defaults its critic to another learning rate
        common["qf_learning_rate"] = s["learning_rate"]
    if ddpg:
        return peer.DDPG("MlpPolicy", env, **common)
    return peer.TD3("MlpPolicy", env, policy_delay=s["policy_delay"], target_policy_noise=s["target_noise"],
               target_noise_clip=s["target_noise_clip"], **common)


def kerasrl_ddpg(env: Any, seed: int, s: dict) -> KerasrlRun:
    return kerasrl_td3(env, seed, s, ddpg=True)


def peer_ddpg(env: Any, seed: int, s: dict, lib: str) -> Any:
    return peer_td3(env, seed, s, lib, ddpg=True)


# LSTM-TD3 with the paper's settings (Meng et al. 2021; benchmarks/pomdp.py uses the same), for the ceiling
# and fit_vs_ceiling.py: no peer library has it.
LSTM_TD3_DEFAULTS = {
    "history_length": 5, "learning_rate": 1e-3, "buffer_size": 1_000_000, "learning_starts": 1000,
    "batch_size": 100, "gamma": 0.99, "tau": 0.005, "train_freq": 1, "gradient_steps": 1, "noise_std": 0.1,
    "policy_delay": 2, "target_noise": 0.2, "target_noise_clip": 0.5, "dtype": "float32",
}


def kerasrl_lstm_td3(env: Any, seed: int, s: dict) -> KerasrlRun:
    import keras
    import kerasrl
    from kerasrl import callbacks as rlcb, noise

    agent = kerasrl.LSTMTD3.from_env(env, history_length=s["history_length"], gamma=s["gamma"], tau=s["tau"],
                                     policy_delay=s["policy_delay"], target_noise=s["target_noise"],
                                     target_noise_clip=s["target_noise_clip"], dtype=s["dtype"], seed=seed)
    buffer = kerasrl.ReplayBuffer(s["buffer_size"], history_length=s["history_length"], seed=seed)
    return KerasrlRun(
        agent=agent,
        optimizer=keras.optimizers.Adam(s["learning_rate"]),
        dataset_kwargs=replay_kwargs(s, seed, buffer, action_noise=noise.Gaussian(s["noise_std"])),
        callbacks=[rlcb.SoftTargetUpdate(tau=s["tau"])],
    )


ALGOS: dict[str, Algo] = {
    "sac": Algo(kerasrl_sac, peer_sac, SAC_DEFAULTS, SAC_ENV_DEFAULTS),
    "dqn": Algo(kerasrl_dqn, peer_dqn, DQN_DEFAULTS, DQN_ENV_DEFAULTS),
    "td3": Algo(kerasrl_td3, peer_td3, TD3_DEFAULTS),
    "ddpg": Algo(kerasrl_ddpg, peer_ddpg, TD3_DEFAULTS),
    "lstm_td3": Algo(kerasrl_lstm_td3, None, LSTM_TD3_DEFAULTS),
}


# ----------------------------------------------------------------- helpers
def _claim_stdout() -> None:
    """Keeps the real stdout for JSON lines and points fd 1 at stderr.

    Anything else that writes to stdout (Python prints, C++ libraries writing
    to fd 1) then lands on stderr, so stdout carries only JSON lines.
    """
    global _JSON_OUT
    if _JSON_OUT is not None:
        return
    sys.stdout.flush()
    _JSON_OUT = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def emit(record: dict, out_file: str | None = None) -> None:
    line = json.dumps(_clean(record))
    _JSON_OUT.write(line + "\n")
    _JSON_OUT.flush()
    if out_file:
        with open(out_file, "a") as f:
            f.write(line + "\n")


def parse_assignments(items: list[str], flag: str) -> dict:
    """`KEY=VALUE` arguments as a dict, each VALUE read as JSON (a plain string otherwise)."""
    parsed = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"{flag} takes KEY=VALUE, got {item!r}")
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def machine_info() -> dict:
    cpu_model = platform.processor() or None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "python": platform.python_version(),
    }


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def tf_versions() -> dict:
    import gymnasium
    import keras
    import numpy
    import tensorflow

    return {"tensorflow": tensorflow.__version__, "keras": keras.__version__,
            "gymnasium": gymnasium.__version__, "numpy": numpy.__version__}


def tf_threads() -> dict:
    import tensorflow as tf

    return {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}  # 0 = TF's default


def dataset_options(job: dict) -> dict:
    """The EnvDataset options given on the command line (the rest keep their defaults)."""
    return {k: job[k] for k in ("prefetch", "policy_sync_every") if job.get(k) is not None}


def compile_options(run: KerasrlRun, job: dict) -> dict:
    """The builder's compile arguments, with XLA when the command line asks for it."""
    return {**run.compile_kwargs, **({"jit_compile": True} if job.get("jit_compile") else {})}


def configure_threads(job: dict) -> None:
    """TensorFlow's thread pools, set before TF runs its first op."""
    import tensorflow as tf

    if job.get("intra_op_threads"):
        tf.config.threading.set_intra_op_parallelism_threads(job["intra_op_threads"])
    if job.get("inter_op_threads"):
        tf.config.threading.set_inter_op_parallelism_threads(job["inter_op_threads"])


def check_updates(data: Any, steps: int) -> int:
    updates = data.updates_for(steps)
    if updates <= 0:
        raise SystemExit(f"--steps {steps} leaves no gradient step after learning_starts="
                         f"{data.learning_starts}.")
    return updates


class CurveLogger:
    """Writes `<curve_dir>/kerasrl-<algo>-<env>-seed<k>/` like a CLI run folder
    (config.json, progress.csv with env_steps, episode_return and eval_return
    every `eval_every` env steps), timing the evaluations so the throughput
    figures leave them out."""

    def __init__(self, job: dict, settings: dict, data: Any):
        from pathlib import Path

        self.dir = Path(job["curve_dir"]) / f"kerasrl-{job['algo']}-{job['env']}-seed{job['seed']}"
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config.json").write_text(json.dumps(
            {"algo": job["algo"], "env": job["env"], "seed": job["seed"], "steps": job["steps"],
             "settings": settings, "date": now()}, indent=2) + "\n")
        (self.dir / "progress.csv").unlink(missing_ok=True)  # a rerun starts the file anew
        self.job = job
        self.eval_seconds = 0.0

    def callbacks(self, append: bool = False) -> list:
        """Evaluation and progress.csv; `append` for a run of several fit calls (the file is started anew here)."""
        import gymnasium as gym
        from kerasrl import callbacks as rlcb
        from kerasrl.cli import _CSVLogger  # Keras' CSVLogger without empty val_* columns

        logger = self

        class TimedEval(rlcb.EvalCallback):
            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                start = time.perf_counter()
                super().on_epoch_end(epoch, logs)
                logger.eval_seconds += time.perf_counter() - start

        return [TimedEval(gym.make(self.job["env"]), episodes=self.job["curve_eval_episodes"],
                          seed=10_000 + self.job["seed"]),
                _CSVLogger(str(self.dir / "progress.csv"), append=append)]


# -------------------------------------------------------------------- jobs
def run_kerasrl(job: dict) -> dict:
    import gymnasium as gym
    import numpy as np
    import kerasrl

    configure_threads(job)
    algo = ALGOS[job["algo"]]
    settings = algo.settings(job["env"], job["steps"], job.get("set"))
    seed, steps, spe = job["seed"], job["steps"], job["steps_per_execution"]
    env = gym.make(job["env"])
    run = algo.kerasrl(env, seed, settings)
    agent = run.agent
    data = kerasrl.EnvDataset(env, agent, seed=seed, **run.dataset_kwargs, **dataset_options(job))
    updates = check_updates(data, steps)
    # Agent.fit runs exactly steps_per_epoch updates per epoch for any steps_per_execution.
    epochs, steps_per_epoch = 1, updates
    callbacks = list(run.callbacks)
    curve = None
    if job.get("curve_dir"):  # a run folder with progress.csv for `kerasrl plot`
        curve = CurveLogger(job, settings, data)
        steps_per_epoch = max(1, job["eval_every"] // (data.train_freq * data.n_envs) * data.gradient_steps)
        epochs = -(-updates // steps_per_epoch)
        updates = epochs * steps_per_epoch
        callbacks += curve.callbacks()
    agent.compile(optimizer=run.make_optimizer(updates), steps_per_execution=spe, **compile_options(run, job))

    start = time.perf_counter()
    agent.fit(data, epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=callbacks, verbose=0)
    fit_seconds = time.perf_counter() - start - (curve.eval_seconds if curve else 0.0)
    with data.lock:  # a prefetched batch may still be collecting
        env_steps = data.env_steps
    done_updates = int(agent.num_gradient_steps.numpy())
    if done_updates != updates:
        log(f"warning: kerasrl ran {done_updates} gradient steps, planned {updates}")

    eval_seed = 10_000 + seed
    returns = agent.evaluate_env(gym.make(job["env"]), episodes=job["eval_episodes"], seed=eval_seed,
                                 deterministic=True)
    return {
        "lib": "kerasrl", "algo": job["algo"], "env": job["env"], "steps": steps, "seed": seed,
        "steps_per_second": env_steps / fit_seconds, "updates_per_second": done_updates / fit_seconds,
        "eval_mean": float(np.mean(returns)), "eval_std": float(np.std(returns)),
        "fit_seconds": fit_seconds, "updates": done_updates, "env_steps": env_steps,
        "epochs": epochs, "steps_per_epoch": steps_per_epoch, "steps_per_execution": spe,
        "jit_compile": bool(job.get("jit_compile")),
        "dataset": {"prefetch": data.prefetch, "policy_sync_every": data.policy_sync_every},
        "tf_threads": tf_threads(),
        "eval_seed": eval_seed, "eval_episodes": job["eval_episodes"],
        "eval_returns": [round(float(r), 3) for r in returns],
        "settings": settings, "versions": tf_versions(),
        "machine": machine_info(), "date": now(),
    }


def fixed_batch_dataset(data: Any) -> Any:
    """The ceiling's input: one batch from `data` (after its warm-up steps), repeated without end."""
    import tensorflow as tf

    batch = dict(zip([f[0] for f in data._fields()], data.next_batch()))
    return tf.data.Dataset.from_tensors(batch).repeat()


def on_fixed_batch(job: dict) -> tuple[KerasrlRun, Any, Any, dict]:
    """The job's kerasrl agent (uncompiled, seed 0), its env, the ceiling's input and the settings."""
    import gymnasium as gym
    import kerasrl

    algo = ALGOS[job["algo"]]
    settings = algo.settings(job["env"], job["steps"], job.get("set"))
    env = gym.make(job["env"])
    run = algo.kerasrl(env, 0, settings)
    data = kerasrl.EnvDataset(env, run.agent, seed=0, **run.dataset_kwargs, **dataset_options(job))
    return run, env, fixed_batch_dataset(data), settings


def run_ceiling(job: dict) -> dict:
    configure_threads(job)
    spe, n = job["steps_per_execution"], job["ceiling_updates"]
    n = max(spe, -(-n // spe) * spe)  # whole executions
    run, env, dataset, settings = on_fixed_batch(job)
    agent = run.agent
    agent.compile(optimizer=run.make_optimizer(n), steps_per_execution=spe, **compile_options(run, job))

    start = time.perf_counter()
    agent.fit(dataset, epochs=1, steps_per_epoch=10 * spe, shuffle=False, verbose=0)  # trace + XLA compile
    warmup_seconds = time.perf_counter() - start
    times, cpu_times = [], []
    for _ in range(job.get("ceiling_repetitions", 2)):
        cpu, start = time.process_time(), time.perf_counter()
        agent.fit(dataset, epochs=1, steps_per_epoch=n, shuffle=False, verbose=0)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu)  # every thread of the process
    best = min(times)
    # What acting costs next to an update: one observation through agent.act.
    obs, _ = env.reset(seed=0)
    agent.act(obs)
    start = time.perf_counter()
    for _ in range(2000):
        agent.act(obs)
    act_microseconds = (time.perf_counter() - start) / 2000 * 1e6
    return {
        "lib": "kerasrl", "kind": "ceiling", "algo": job["algo"], "env": job["env"],
        "act_microseconds": act_microseconds, "updates_per_second": n / best, "updates": n, "repetitions_seconds": times,
        "repetitions_cpu_seconds": cpu_times,
        "warmup_seconds": warmup_seconds, "steps_per_execution": spe, "tf_threads": tf_threads(),
        "jit_compile": bool(job.get("jit_compile")),
        "settings": settings, "versions": tf_versions(), "machine": machine_info(), "date": now(),
    }


def peer_versions(lib: str, model: Any) -> dict:
    import gymnasium
    import numpy

    if lib == "sbx":
        import jax
        import sbx

        return {"sbx": sbx.__version__, "jax": jax.__version__, "jax_device": str(jax.devices()[0]),
                "numpy": numpy.__version__, "gymnasium": gymnasium.__version__}
    import stable_baselines3
    import torch

    return {"stable_baselines3": stable_baselines3.__version__, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "numpy": numpy.__version__,
            "gymnasium": gymnasium.__version__, "device": str(model.device)}


def run_peer(job: dict) -> dict:
    """One SB3 or SBX run (`job["job"]`), timed over `learn`, then its deterministic evaluation."""
    lib = job["job"]
    if lib == "sbx" and "tensorflow" not in sys.modules:
        # SB3's logger imports TensorFlow through tensorboard where it is installed,
        # and TensorFlow Probability's JAX substrate (SBX uses it) then asks for
        # tf-keras. A JAX user has no TensorFlow: this process goes without it.
        sys.modules["tensorflow"] = None
    import gymnasium as gym
    import numpy as np

    algo = ALGOS[job["algo"]]
    settings = algo.settings(job["env"], job["steps"], job.get("set"))
    seed, steps = job["seed"], job["steps"]
    model = algo.peer(gym.make(job["env"]), seed, settings, lib)

    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    fit_seconds = time.perf_counter() - start
    env_steps = int(model.num_timesteps)

    eval_seed = 10_000 + seed
    env = gym.make(job["env"])
    returns = np.zeros(job["eval_episodes"])
    for episode in range(job["eval_episodes"]):
        obs, _ = env.reset(seed=eval_seed if episode == 0 else None)
        done = False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            returns[episode] += float(reward)
            done = terminated or truncated
    return {
        "lib": lib, "algo": job["algo"], "env": job["env"], "steps": steps, "seed": seed,
        "steps_per_second": env_steps / fit_seconds,
        "eval_mean": float(np.mean(returns)), "eval_std": float(np.std(returns)),
        "fit_seconds": fit_seconds, "updates": int(getattr(model, "_n_updates", -1)),
        "env_steps": env_steps, "eval_seed": eval_seed, "eval_episodes": job["eval_episodes"],
        "eval_returns": [round(float(r), 3) for r in returns],
        "settings": settings, "versions": peer_versions(lib, model),
        "machine": machine_info(), "date": now(),
    }


JOBS = {"kerasrl": run_kerasrl, "ceiling": run_ceiling, "sb3": run_peer, "sbx": run_peer}


def run_job(job: dict, in_process: bool) -> dict:
    if in_process:
        return JOBS[job["job"]](job)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(job)],
                          stdout=subprocess.PIPE, text=True)  # stderr passes through
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"benchmark job {job['job']} (seed {job.get('seed')}) failed "
                         f"with exit status {proc.returncode}; see its stderr above.")
    return json.loads(lines[-1])


# -------------------------------------------------------------------- main
def mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def median(values: list) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def ratio(numerators: list[float], denominators: list[float]) -> dict | None:
    """kerasrl's rate over a peer's: the ratio of medians, with the per-seed ratios' range.

    Seeds pair the runs that ran next to each other, so the per-seed ratios show
    how much of the headline a slow or fast stretch of the machine could move.
    """
    if not numerators or not denominators:
        return None
    paired = [n / d for n, d in zip(numerators, denominators)]
    return {"median": median(numerators) / median(denominators), "per_seed": paired,
            "min": min(paired), "max": max(paired)}


def merge_ceilings(ceilings: list[dict]) -> dict:
    """One ceiling line from the measurements taken beside each run.

    `updates_per_second` is over all repetitions together (updates over total
    time), the same kind of average as a run's rate; this VM's speed changes
    for seconds at a time (see the README), and the best repetition alone
    would compare a fast stretch with runs that averaged over slow ones.
    `best_updates_per_second` is the fastest repetition.
    """
    times = [t for c in ceilings for t in c["repetitions_seconds"]]
    n = ceilings[0]["updates"]
    return {**ceilings[0], "updates_per_second": n * len(times) / sum(times),
            "best_updates_per_second": n / min(times), "repetitions_seconds": times,
            "repetitions_cpu_seconds": [t for c in ceilings for t in c["repetitions_cpu_seconds"]],
            "act_microseconds": mean([c["act_microseconds"] for c in ceilings])}


def summary(records: list[dict], ceiling: dict | None, args: argparse.Namespace) -> dict:
    libs = {}
    for lib in ["kerasrl", *PEERS]:
        runs = [r for r in records if r["lib"] == lib]
        if runs:
            rates = [r["steps_per_second"] for r in runs]
            libs[lib] = {"steps_per_second": median(rates), "steps_per_second_range": [min(rates), max(rates)],
                         "steps_per_second_per_seed": rates,
                         "updates_per_second": median([r.get("updates_per_second") for r in runs]),
                         "eval_mean": mean([r["eval_mean"] for r in runs]),
                         "eval_per_seed": [r["eval_mean"] for r in runs],
                         "seeds": [r["seed"] for r in runs]}
    k = libs.get("kerasrl")
    ratios = {f"ratio_vs_{lib}": ratio(k["steps_per_second_per_seed"], libs[lib]["steps_per_second_per_seed"])
              for lib in PEERS if k and lib in libs}
    return {
        "kind": "summary", "algo": args.algo, "env": args.env, "steps": args.steps, **libs, **ratios,
        "ceiling_updates_per_second": ceiling["updates_per_second"] if ceiling else None,
        "best_ceiling_updates_per_second": ceiling["best_updates_per_second"] if ceiling else None,
        # Updates per second during fit over the ceiling's (equal to env steps
        # per second when an update follows every env step, as in SAC).
        "fraction_of_ceiling": k["updates_per_second"] / ceiling["updates_per_second"] if k and ceiling else None,
        "command": "python " + shlex.join(sys.argv),
        "machine": machine_info(), "date": now(),
    }


def task_arguments(p: argparse.ArgumentParser) -> None:
    """--algo, --env, --steps and --set, for the tools that measure one agent's update at run.py's settings."""
    p.add_argument("--algo", choices=sorted(ALGOS), default="sac")
    p.add_argument("--env", default="Pendulum-v1")
    p.add_argument("--steps", type=int, default=20_000, help="the run's budget (settings that scale with it)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="settings overrides, as in run.py")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", choices=sorted(ALGOS), default="sac")
    p.add_argument("--env", default="Pendulum-v1")
    p.add_argument("--steps", type=int, default=20_000, help="env steps per run, learning_starts included")
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="none: the ceiling only")
    p.add_argument("--compare", choices=sorted(PEERS), nargs="+", default=[],
                   help="also run these peers seed by seed beside kerasrl: sb3 (Stable-Baselines3), sbx (SBX, JAX)")
    p.add_argument("--steps-per-execution", type=int, default=50)
    p.add_argument("--policy-sync-every", type=int, default=None, help="EnvDataset option (its default if unset)")
    p.add_argument("--prefetch", type=int, default=None, help="EnvDataset option (its default if unset)")
    p.add_argument("--intra-op-threads", type=int, default=None,
                   help="TensorFlow threads inside one op (TF's default if unset)")
    p.add_argument("--inter-op-threads", type=int, default=None,
                   help="TensorFlow threads running independent ops (TF's default if unset)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override settings of both libraries, VALUE as JSON, e.g. learning_rate=1e-3 net_arch=[64,64]")
    p.add_argument("--jit-compile", action="store_true", help="kerasrl only: XLA-compile the update")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--ceiling-updates", type=int, default=3000, help="updates per timed ceiling repetition")
    p.add_argument("--no-ceiling", action="store_true")
    p.add_argument("--out", default=None, help="also append the JSON lines to this file")
    p.add_argument("--curve-dir", default=None,
                   help="write a run folder per kerasrl run here (progress.csv for `kerasrl plot`)")
    p.add_argument("--eval-every", type=int, default=10_000, help="env steps between curve evaluations")
    p.add_argument("--curve-eval-episodes", type=int, default=5, help="episodes per curve evaluation")
    p.add_argument("--in-process", action="store_true",
                   help="run every job in this process instead of one fresh process per job")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.compare and ALGOS[args.algo].peer is None:
        p.error(f"no peer library has {args.algo}: run it without --compare")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    _claim_stdout()
    if args.worker:  # one job in a fresh process, launched by run_job
        emit(JOBS[json.loads(args.worker)["job"]](json.loads(args.worker)))
        return
    if args.steps_per_execution < 1:
        raise SystemExit("--steps-per-execution must be >= 1.")
    for lib in args.compare:
        needs = {"sb3": ("stable_baselines3", "torch"), "sbx": ("sbx", "jax")}[lib]
        missing = [m for m in needs if importlib.util.find_spec(m) is None]
        if missing:
            raise SystemExit(f"--compare {lib} needs {' and '.join(missing)}: "
                             f'pip install -e ".[bench]"')
    if "sbx" in args.compare and args.in_process:
        raise SystemExit("--compare sbx runs each job in its own process: drop --in-process "
                         "(TensorFlow and SBX's JAX stack do not share a process).")

    overrides = parse_assignments(args.set, "--set")
    for key in overrides:
        if key not in ALGOS[args.algo].settings(args.env, args.steps):
            raise SystemExit(f"--set: {args.algo} has no setting {key!r}")
    base = {"algo": args.algo, "env": args.env, "steps": args.steps, "set": overrides,
            "steps_per_execution": args.steps_per_execution, "policy_sync_every": args.policy_sync_every,
            "prefetch": args.prefetch, "eval_episodes": args.eval_episodes,
            "intra_op_threads": args.intra_op_threads, "inter_op_threads": args.inter_op_threads,
            "ceiling_updates": args.ceiling_updates, "curve_dir": args.curve_dir, "eval_every": args.eval_every,
            "curve_eval_episodes": args.curve_eval_episodes, "jit_compile": args.jit_compile}
    libs = ["kerasrl", *args.compare]
    records, ceilings = [], []

    def measure_ceiling() -> None:
        log(f"ceiling: {args.ceiling_updates} updates on a fixed in-memory batch")
        ceilings.append(run_job({**base, "job": "ceiling"}, args.in_process))

    for seed in args.seeds:
        for lib in libs:
            log(f"{lib} {args.algo} {args.env} seed={seed} steps={args.steps}")
            record = run_job({**base, "job": lib, "seed": seed}, args.in_process)
            emit(record, args.out)
            records.append(record)
            if lib == "kerasrl" and not args.no_ceiling:
                measure_ceiling()  # beside each run, so the ceiling samples the machine as the runs did
    ceiling = None
    if not args.no_ceiling:
        if not ceilings:  # --seeds with no seed: the ceiling only
            measure_ceiling()
        ceiling = merge_ceilings(ceilings)
        emit(ceiling, args.out)
    emit(summary(records, ceiling, args), args.out)


if __name__ == "__main__":
    main()
