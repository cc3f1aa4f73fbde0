"""The `kerasrl` command line: train, evaluate, play, export, plot and tune agents.

```
python -m kerasrl train sac Pendulum-v1 --steps 20000 --out runs/sac-pendulum
python -m kerasrl eval runs/sac-pendulum/agent.keras Pendulum-v1 --episodes 10
python -m kerasrl play runs/sac-pendulum/agent.keras Pendulum-v1 --episodes 2 --video pendulum.gif
python -m kerasrl export runs/sac-pendulum/agent.keras --format onnx -o policy.onnx
python -m kerasrl train td3 HalfCheetahBulletEnv-v0 --steps 300000 --learning-starts 10000 --seed 1 --out runs/td3-s1
python -m kerasrl plot runs/td3-s0 runs/td3-s1 -o curve.png
python -m kerasrl tune sac Pendulum-v1 --trials 8 --steps 10000 --out tune/
python -m kerasrl train lstm_td3 Pendulum-v1 --pomdp remove_velocity --config net.toml --steps 50000
python -m kerasrl train ppo LunarLander-v3 --n-envs 16 --steps 1000000
```

`--config FILE.toml` gives any `train` option by its long name (underscores
for dashes) at the top level, and the agent's own constructor arguments in an
`[agent]` table; options on the command line override the file:

```toml
steps = 50000
batch_size = 100
lr = 1e-3

[agent]
history_length = 5
memory_hidden = [128]
lstm_units = 128
feature_hidden = [128, 128]
hidden = [128]
```

A run folder holds `config.json` (the arguments), `progress.csv` (one row per
epoch: losses, `episode_return`, `eval_return`, ...), `tensorboard/`,
`agent.keras`, `eval.json` (the final deterministic evaluation) and, with
`--checkpoint-every`, `checkpoints/` that `--resume` continues from. One
`kerasrl train` at a time holds a folder (a lock on `.kerasrl.lock`, which the
system releases when the process ends, however it ends).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import inspect
import json
import os
import shutil
import sys
import time
import tomllib
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import kerasrl  # sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads

import gymnasium as gym  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from kerasrl import callbacks as rlcb  # noqa: E402
from kerasrl import video  # noqa: E402
from kerasrl.envs import pomdp  # noqa: E402
from kerasrl.agents.base import DEFAULT_STEPS_PER_EXECUTION  # noqa: E402
from kerasrl.agents.on_policy import OnPolicyAgent  # noqa: E402
from kerasrl.spaces import same_spaces  # noqa: E402
from kerasrl.training import EVAL_SEED_OFFSET, StopAtEnvSteps, fit_plan, plan_epochs, remaining_plan  # noqa: E402

# Algorithm name -> agent class. A new agent joins the CLI with one line here;
# it must take `from_env(env, hidden=, gamma=, seed=)` (and tau= for --tau). On-policy agents
# (ac, a2c, ppo) train on a RolloutDataset; the replay options do not apply to them.
ALGOS: dict[str, Callable[..., kerasrl.Agent]] = {
    "sac": kerasrl.SAC,
    "dqn": kerasrl.DQN,
    "td3": kerasrl.TD3,
    "ddpg": kerasrl.DDPG,
    "lstm_td3": kerasrl.LSTMTD3,
    "ac": kerasrl.ActorCritic,
    "a2c": kerasrl.A2C,
    "ppo": kerasrl.PPO,
}

# What a fresh run writes into its folder (removed by --overwrite).
RUN_FILES = ("config.json", "progress.csv", "tensorboard", "agent.keras", "eval.json", "checkpoints")
CLAIM_FILE = ".kerasrl.lock"  # held (flock) by the one `kerasrl train` that uses the folder


class CLIError(Exception):
    """A problem with the command's input, reported as `kerasrl: error: ...` (exit status 2)."""


# --------------------------------------------------------------------- parsing
def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _algo(text: str) -> str:
    name = text.lower().replace("-", "_")
    if name not in ALGOS:
        raise argparse.ArgumentTypeError(f"unknown algorithm {text!r}; choose from {', '.join(sorted(ALGOS))}")
    return name


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except the empty ones (None, False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help or ""
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kerasrl",
        description="Train and evaluate kerasrl agents (Keras 3 models) on gymnasium environments.",
    )
    parser.add_argument("--version", action="version", version=f"kerasrl {kerasrl.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{train,eval,plot,tune}", required=True)

    train = sub.add_parser(
        "train",
        help="train an agent and save it as a .keras file",
        description="Train an agent with agent.fit over an EnvDataset (a RolloutDataset for ac, a2c and ppo); "
                    "writes agent.keras, "
                    "progress.csv, tensorboard/, config.json and eval.json into --out.",
        formatter_class=_HelpFormatter,
    )
    train.add_argument("algo", type=_algo, metavar="ALGO", help=f"algorithm: {', '.join(sorted(ALGOS))}")
    train.add_argument("env", metavar="ENV_ID", help="gymnasium environment id, e.g. Pendulum-v1")
    train.add_argument("--steps", type=_positive_int, default=20_000,
                       help="environment steps in total (warm-up included)")
    train.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<algo>-<env>)")
    train.add_argument("--seed", type=int, default=0, help="seed of networks, environment and sampling")
    train.add_argument("--config", type=Path, default=None, metavar="FILE.toml",
                       help="options from a TOML file (top level: these options; [agent]: the agent's "
                            "constructor arguments); command-line options override it")
    train.add_argument("--pomdp", default=None, metavar="KIND",
                       help="partially observed task: " + ", ".join(pomdp.KINDS) + ", or two joined by _and_")
    train.add_argument("--history-length", type=_non_negative_int, default=None,
                       help="lstm_td3: past steps the networks see (default: the agent's, 5)")
    train.add_argument("--hidden", type=_positive_int, nargs="+", default=None,
                       help="hidden layer sizes of every network (default: the agent's: 256 256 for SAC, "
                            "64 64 for DQN, 400 300 for TD3 and DDPG)")
    train.add_argument("--dtype", choices=("float32", "mixed_bfloat16"), default="float32",
                       help="dtype policy of the hidden layers (mixed_bfloat16: faster on CPUs with AVX512-BF16)")
    train.add_argument("--lr", type=float, default=None,
                       help="Adam learning rate of every network (default 1e-3; ac, a2c and ppo: the agent's own "
                            "optimizer, Adam(1e-2), RMSprop(7e-4) and Adam(3e-4))")
    train.add_argument("--gamma", type=float, default=0.99, help="discount factor")
    train.add_argument("--tau", type=float, default=None,
                       help="target update factor (default: the agent's: 0.005 for SAC, 1.0 = copies for DQN)")
    train.add_argument("--batch-size", type=_positive_int, default=None,
                       help="transitions per gradient step (default 256; a2c and ppo: the agent's)")
    train.add_argument("--buffer-size", type=_positive_int, default=1_000_000, help="replay buffer capacity")
    train.add_argument("--learning-starts", type=_non_negative_int, default=100,
                       help="random-action environment steps before the first update")
    train.add_argument("--train-freq", type=_positive_int, default=1,
                       help="(vector) environment steps between rounds of updates")
    train.add_argument("--gradient-steps", type=_positive_int, default=1, help="gradient steps per round")
    train.add_argument("--n-step", default="1", help="n-step returns: a positive integer or 'episode'")
    train.add_argument("--prioritized", action="store_true", help="prioritized replay (proportional, alpha 0.6)")
    train.add_argument("--noise-type", choices=("normal", "ou"), default="normal",
                       help="TD3/DDPG exploration noise: Gaussian or Ornstein-Uhlenbeck (theta 0.15, dt 0.01)")
    train.add_argument("--noise-std", type=float, default=0.1,
                       help="TD3/DDPG exploration noise scale (sigma), in [-1, 1] action units")
    train.add_argument("--n-envs", type=_positive_int, default=1, help="environment copies stepped together")
    train.add_argument("--steps-per-epoch", type=_positive_int, default=1000,
                       help="gradient steps per Keras epoch (the last epoch may be shorter); a2c and ppo: "
                            "one rollout per epoch")
    train.add_argument("--steps-per-execution", type=_positive_int, default=DEFAULT_STEPS_PER_EXECUTION,
                       help="gradient steps per compiled call (the agents' default)")
    train.add_argument("--eval-episodes", type=_positive_int, default=10,
                       help="episodes of the final deterministic evaluation")
    train.add_argument("--epoch-eval-episodes", type=_non_negative_int, default=5,
                       help="episodes of the evaluation after every epoch (eval_return; 0 = off)")
    train.add_argument("--checkpoint-every", type=_non_negative_int, default=0,
                       help="environment steps between checkpoints in <out>/checkpoints (0 = off)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its newest checkpoint up to --steps")
    train.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run in --out")
    train.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                       help="Keras fit verbosity (1 = progress bar)")

    ev = sub.add_parser(
        "eval",
        help="evaluate a saved .keras agent",
        description="Load an agent with keras.saving.load_model and run deterministic episodes.",
        formatter_class=_HelpFormatter,
    )
    _add_episode_arguments(ev, episodes=10)
    ev.add_argument("--render", action="store_true", help="show the episodes (render_mode='human')")
    ev.add_argument("--json", type=Path, default=None, help="also write the returns to this JSON file")

    play = sub.add_parser(
        "play",
        help="show a saved .keras agent's episodes, or record them to a video",
        description="Load an agent with keras.saving.load_model and run episodes: shown in a window "
                    "(render_mode='human'), or with --video written to an MP4 or GIF file "
                    "(needs pip install 'kerasrl[video]').",
        formatter_class=_HelpFormatter,
    )
    _add_episode_arguments(play, episodes=1)
    play.add_argument("--video", type=Path, default=None, help="record to this .mp4 or .gif file instead of showing")
    play.add_argument("--fps", type=float, default=None, help="frames per second of the video (the env's by default)")

    ex = sub.add_parser(
        "export",
        help="write a saved agent's deterministic policy for serving (SavedModel, ONNX, LiteRT)",
        description="Load an agent with keras.saving.load_model and write its deterministic policy: a batch "
                    "of raw observations in, a batch of environment actions out (see Agent.export_policy).",
        formatter_class=_HelpFormatter,
    )
    ex.add_argument("model", type=Path, metavar="MODEL", help="path of a .keras file saved by kerasrl")
    ex.add_argument("--format", choices=("tf_saved_model", "onnx", "litert"), default="tf_saved_model",
                    help="artifact format (onnx needs pip install 'kerasrl[onnx]')")
    ex.add_argument("-o", "--output", type=Path, default=None,
                    help="file or folder to write (default: policy_savedmodel, policy.onnx or policy.tflite)")

    pl = sub.add_parser(
        "plot",
        help="draw learning curves of run folders",
        description="Draw episode return and eval return against environment steps from the progress.csv "
                    "of run folders; runs of the same algorithm and environment are averaged as seeds "
                    "(mean line, min-max band).",
        formatter_class=_HelpFormatter,
    )
    pl.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR", help="run folders written by kerasrl train")
    pl.add_argument("-o", "--output", type=Path, default=Path("curve.png"), help="image file to write")
    pl.add_argument("--title", default=None, help="figure title")

    tu = sub.add_parser(
        "tune",
        help="search hyperparameters with keras-tuner and save the best agent",
        description="Search an agent's hyperparameters with kerasrl.tuning.RLTuner; writes the keras-tuner "
                    "project, best_agent.keras and best_hyperparameters.json into --out. Running the same "
                    "command again continues an interrupted search (finished trials are kept).",
        formatter_class=_HelpFormatter,
    )
    tu.add_argument("algo", type=_algo, metavar="ALGO", help=f"algorithm: {', '.join(sorted(ALGOS))}")
    tu.add_argument("env", metavar="ENV_ID", help="gymnasium environment id, e.g. Pendulum-v1")
    tu.add_argument("--trials", type=_positive_int, default=8, help="trials of the search (not for hyperband)")
    tu.add_argument("--steps", type=_positive_int, default=10_000,
                    help="environment steps per trial (hyperband: per trial of --max-epochs)")
    tu.add_argument("--out", type=Path, default=None, help="search folder (default: tune/<algo>-<env>)")
    tu.add_argument("--oracle", choices=("bayesian", "random", "hyperband"), default="bayesian",
                    help="keras-tuner search algorithm")
    tu.add_argument("--max-epochs", type=_positive_int, default=9, help="hyperband: epochs of the longest trials")
    tu.add_argument("--factor", type=int, default=3, help="hyperband: reduction factor between rounds")
    tu.add_argument("--eval-episodes", type=_positive_int, default=5,
                    help="deterministic episodes that score a trial (eval_return)")
    tu.add_argument("--executions", type=_positive_int, default=1, help="seeds averaged per trial")
    tu.add_argument("--seed", type=int, default=0,
                    help="seed of each trial's first execution; the oracle's is seed + 1 (keras-tuner reads 0 as none)")
    tu.add_argument("--learning-starts", type=_non_negative_int, default=1000,
                    help="random-action environment steps before the first update of a trial")
    tu.add_argument("--fixed", nargs="+", default=[], metavar="NAME=VALUE",
                    help="hyperparameters to hold fixed, e.g. --fixed gamma=0.98 width=64")
    tu.add_argument("--overwrite", action="store_true", help="start the search again instead of continuing it")
    tu.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                    help="keras-tuner and fit verbosity (1 = trial tables and progress bars)")
    return parser


# --------------------------------------------------------------------- helpers
def _add_episode_arguments(parser: argparse.ArgumentParser, episodes: int) -> None:
    """The arguments of the commands that run a saved agent's episodes (eval, play)."""
    parser.add_argument("model", type=Path, metavar="MODEL", help="path of a .keras file saved by kerasrl")
    parser.add_argument("env", metavar="ENV_ID", help="gymnasium environment id")
    parser.add_argument("--episodes", type=_positive_int, default=episodes, help="episodes to run")
    parser.add_argument("--seed", type=int, default=None, help="seed of the first reset")
    parser.add_argument("--pomdp", default=None, metavar="KIND", help="partially observed task, as for train")
    parser.add_argument("--stochastic", action="store_true", help="sample actions instead of the policy's mode")


def check_env_id(env_id: str) -> None:
    """Raises CLIError naming `env_id` if gymnasium does not know it."""
    try:
        gym.spec(env_id)
    except gym.error.Error as error:
        raise CLIError(f"unknown environment id {env_id!r}: {error}") from None


def make_env(env_id: str, pomdp_kind: str | None = None, **kwargs: Any) -> gym.Env:
    """`gym.make(env_id)`, partially observed by `pomdp_kind` when given."""
    try:
        if pomdp_kind:
            return pomdp.make(env_id, pomdp_kind, **kwargs)
        return gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as error:
        raise CLIError(f"environment {env_id!r} needs a missing dependency: {error}") from None
    except ValueError as error:  # an unknown POMDP kind, or a task remove_velocity does not know
        raise CLIError(str(error)) from None


def training_env(args: argparse.Namespace) -> Any:
    """The environment EnvDataset collects from: an id, or (with --pomdp) the wrapped env(s)."""
    if not args.pomdp:
        return args.env
    if args.n_envs == 1:
        return make_env(args.env, args.pomdp)
    make_env(args.env, args.pomdp).close()  # a bad kind or task fails here, not in a worker
    return gym.vector.SyncVectorEnv([lambda: pomdp.make(args.env, args.pomdp)] * args.n_envs,
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def load_config(path: Path, parser: argparse.ArgumentParser) -> tuple[dict[str, Any], dict[str, Any]]:
    """The train options and the `[agent]` table of a TOML file, checked against `parser`'s options.

    Raises CLIError naming the file and the key for an unknown key or a value of the wrong type.
    """
    try:
        content = tomllib.loads(path.read_text())
    except OSError as error:
        raise CLIError(f"--config: cannot read {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise CLIError(f"--config: {path} is not valid TOML: {error}") from None
    agent_options = content.pop("agent", {})
    if not isinstance(agent_options, dict):
        raise CLIError(f"--config: {path}: 'agent' must be a table of the agent's arguments")
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest not in ("help", "config")}
    options = {}
    for key, value in content.items():
        action = actions.get(key)
        if action is None:
            raise CLIError(f"--config: {path}: unknown option {key!r}; known: {', '.join(sorted(actions))}, "
                           "and an [agent] table")
        options[key] = _config_value(path, key, value, action)
    return options, agent_options


def _config_value(path: Path, key: str, value: Any, action: argparse.Action) -> Any:
    """`value` from the file as `action` would parse it from the command line."""
    def wrong(expected: str) -> CLIError:
        return CLIError(f"--config: {path}: {key} must be {expected}, got {value!r}")

    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    items = value if action.nargs in ("+", "*") else [value]
    if action.nargs in ("+", "*") and not (isinstance(value, list) and value):
        raise wrong("a non-empty list")
    convert = action.type or str
    integer = convert in (int, _positive_int, _non_negative_int)
    kind = "an integer" if integer else "a number" if convert is float else "a string"
    parsed = []
    for item in items:
        if isinstance(item, (bool, dict, list)) or (integer and isinstance(item, float)) or (
                convert is float and not isinstance(item, (int, float))):
            raise wrong(f"a list of {kind[kind.index(' ') + 1:]}s" if action.nargs in ("+", "*") else kind)
        try:
            item = convert(str(item))
        except (ValueError, argparse.ArgumentTypeError) as error:
            raise wrong(f"valid ({error})") from None
        if action.choices is not None and item not in action.choices:
            raise wrong(f"one of {', '.join(map(str, action.choices))}")
        parsed.append(item)
    return parsed if action.nargs in ("+", "*") else parsed[0]


def agent_options(args: argparse.Namespace) -> dict[str, Any]:
    """Constructor arguments of the agent from the options (and --config's [agent] table), checked by name."""
    cls = ALGOS[args.algo]
    options = dict(getattr(args, "agent_options", None) or {})
    options["dtype"] = args.dtype
    if args.tau is not None:
        options["tau"] = args.tau
    if args.hidden is not None:
        options["hidden"] = args.hidden
    if args.history_length is not None:
        if "history_length" not in inspect.signature(cls.__init__).parameters:
            raise CLIError(f"--history-length applies to lstm_td3, not {args.algo}")
        options["history_length"] = args.history_length
    defaults: dict[str, Any] = {"dtype": None}  # argument -> its default, which gives the expected type
    for klass in reversed(cls.__mro__[: cls.__mro__.index(kerasrl.Agent) + 1]):
        defaults.update({name: p.default for name, p in inspect.signature(klass.__init__).parameters.items()
                         if p.kind is p.POSITIONAL_OR_KEYWORD
                         and name not in ("self", "observation_space", "action_space")})
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise CLIError(f"--config: {args.config}: [agent] has unknown argument(s) {', '.join(unknown)} for "
                       f"{args.algo}; it takes {', '.join(sorted(defaults))}")
    for name, value in options.items():
        expected = _expected_type(defaults[name])
        if expected and not _has_type(value, expected):
            raise CLIError(f"--config: {args.config}: [agent] {name} must be {expected}, got {value!r}")
    return options


def _expected_type(default: Any) -> str | None:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, str):
        return "a string"
    if isinstance(default, (tuple, list)):
        return "a list of integers"
    return None  # no default, or None: the agent checks it


def _has_type(value: Any, expected: str) -> bool:
    integer = lambda v: isinstance(v, int) and not isinstance(v, bool)
    return {"true or false": lambda v: isinstance(v, bool), "an integer": integer,
            "a number": lambda v: integer(v) or isinstance(v, float), "a string": lambda v: isinstance(v, str),
            "a list of integers": lambda v: isinstance(v, (list, tuple)) and all(integer(x) for x in v)}[expected](value)


def check_spaces(agent: kerasrl.Agent, env: gym.Env, model: Any, env_id: str) -> None:
    """Raises CLIError if the environment's spaces are not the ones the agent was built for."""
    for role, env_space, agent_space in (("observation", env.observation_space, agent.observation_space),
                                         ("action", env.action_space, agent.action_space)):
        if not same_spaces(env_space, agent_space):
            raise CLIError(f"{model} was trained with {role} space {agent_space}, but {env_id} has {env_space}")


def summary(returns: np.ndarray) -> str:
    return f"{np.mean(returns):.2f} ± {np.std(returns):.2f}"


def _write_json(path: Path, content: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(content, indent=2, default=str) + "\n")
    os.replace(tmp, path)


class _CSVLogger(keras.callbacks.CSVLogger):
    """CSVLogger without the empty `val_*` columns Keras adds when fit has no validation data."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.keys is None and logs:
            self.keys = sorted(logs)
        super().on_epoch_end(epoch, logs)


# ----------------------------------------------------------------------- train
class RunFolderClaim:
    """This process's exclusive claim on a run folder, for as long as it is held.

    An advisory lock (`flock`) on `<run_dir>/.kerasrl.lock`: a second claim on
    the same folder fails at once, and the system releases the lock when the
    holder ends, even by SIGKILL, so a killed run never blocks `--resume`.
    The file stays (it records the holder's pid); removing it could let two
    processes lock two different files.
    """

    def __init__(self, run_dir: Path):
        import fcntl

        self.created = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = run_dir
        self.file = open(run_dir / CLAIM_FILE, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.seek(0)
            holder = self.file.read().strip() or "unknown"
            self.file.close()
            raise CLIError(f"{run_dir} is in use by another kerasrl train (pid {holder}); wait for it to end "
                           "or choose another --out") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"{os.getpid()}\n")
        self.file.flush()

    def release(self, wrote: bool = True) -> None:
        """Ends the claim; a folder this claim created is removed again if the run wrote nothing."""
        remove = not wrote and self.created
        if remove:
            (self.run_dir / CLAIM_FILE).unlink(missing_ok=True)
        self.file.close()
        if remove:
            with contextlib.suppress(OSError):  # something else appeared in it meanwhile
                self.run_dir.rmdir()


def _earlier_run(args: argparse.Namespace, run_dir: Path) -> list[Path]:
    """What an earlier run left in `run_dir`; an error unless --resume or --overwrite says what to do."""
    if args.resume:
        return []
    existing = [run_dir / name for name in RUN_FILES if (run_dir / name).exists()]
    if existing and not args.overwrite:
        raise CLIError(f"{run_dir} already holds a run ({', '.join(p.name for p in existing)}); pass --resume "
                       "to continue it from its checkpoints or --overwrite to start again")
    return existing


def _new_agent(args: argparse.Namespace) -> tuple[kerasrl.Agent, Any]:
    on_policy = issubclass(ALGOS[args.algo], OnPolicyAgent)
    if args.batch_size is None and not on_policy:
        args.batch_size = 256
    if not on_policy and args.batch_size > args.buffer_size:
        raise CLIError(f"--batch-size {args.batch_size} is larger than --buffer-size {args.buffer_size}")
    if args.tau is not None and not 0.0 < args.tau <= 1.0:
        raise CLIError(f"--tau must be in (0, 1], got {args.tau}")
    n_step = args.n_step if args.n_step == "episode" else int(args.n_step) if args.n_step.isdigit() else 0
    if not n_step:
        raise CLIError(f"--n-step must be a positive integer or 'episode', got {args.n_step!r}")
    if args.lr is not None and not args.lr > 0.0:
        raise CLIError(f"--lr must be positive, got {args.lr}")
    if not args.noise_std >= 0.0:
        raise CLIError(f"--noise-std must be >= 0, got {args.noise_std}")
    options = agent_options(args)
    probe = make_env(args.env, args.pomdp)
    try:
        agent = ALGOS[args.algo].from_env(probe, **{"gamma": args.gamma, "seed": args.seed, **options})
    except (ValueError, TypeError) as error:  # TypeError: a value of the wrong type in [agent]
        raise CLIError(f"cannot build {args.algo} for {args.env}: {error}") from None
    finally:
        probe.close()
    lr = args.lr if args.lr is not None or on_policy else 1e-3
    # Rollouts of whole episodes (ac): one update per call, so the run stops at --steps; the call's
    # cost is small next to an episode's collection.
    whole_episodes = on_policy and agent.rollout_defaults().get("n_steps") is None
    agent.compile(optimizer=None if lr is None else keras.optimizers.Adam(lr),
                  steps_per_execution=1 if whole_episodes else args.steps_per_execution)
    if on_policy:
        try:
            return agent, kerasrl.RolloutDataset(training_env(args), agent, batch_size=args.batch_size,
                                                 n_envs=args.n_envs, seed=args.seed)
        except ValueError as error:
            raise CLIError(f"cannot collect rollouts for {args.algo}: {error}") from None
    noise = None
    if agent.default_action_noise() is not None:  # agents that explore with action noise (TD3, DDPG)
        noise = (kerasrl.noise.Gaussian(args.noise_std) if args.noise_type == "normal"
                 else kerasrl.noise.OrnsteinUhlenbeck(sigma=args.noise_std))
    try:
        buffer = (kerasrl.PrioritizedReplayBuffer if args.prioritized else kerasrl.ReplayBuffer)(
            args.buffer_size, n_step=n_step, seed=args.seed, history_length=agent.history_length)
    except ValueError as error:  # e.g. histories with --n-step episode
        raise CLIError(f"cannot build the replay buffer for {args.algo}: {error}") from None
    data = kerasrl.EnvDataset(
        training_env(args), agent,
        buffer=buffer,
        batch_size=args.batch_size,
        learning_starts=args.learning_starts,
        train_freq=args.train_freq,
        gradient_steps=args.gradient_steps,
        n_envs=args.n_envs,
        action_noise=noise,
        seed=args.seed,
    )
    return agent, data


def _resumed_agent(args: argparse.Namespace, run_dir: Path) -> tuple[kerasrl.Agent, Any]:
    checkpoints = run_dir / "checkpoints"
    try:
        rlcb.latest_checkpoint(checkpoints)
    except FileNotFoundError:
        raise CLIError(f"--resume: no checkpoint under {checkpoints}; train with --checkpoint-every N "
                       "to write checkpoints") from None
    config_file = run_dir / "config.json"
    if config_file.exists():
        saved = json.loads(config_file.read_text())
        for key in ("algo", "env"):
            if saved.get(key) not in (None, getattr(args, key)):
                raise CLIError(f"--resume: {run_dir} holds a {saved.get('algo')} run on {saved.get('env')}, "
                               f"not {args.algo} on {args.env}")
        if not args.checkpoint_every:
            args.checkpoint_every = int(saved.get("checkpoint_every") or 0)
    with warnings.catch_warnings(record=True) as skipped:
        warnings.simplefilter("always")
        try:
            agent, data = kerasrl.resume(checkpoints, training_env(args))
        except rlcb.DamagedCheckpointError as error:
            raise CLIError(f"--resume: {error}") from None
    for warning in skipped:  # what resume says of damaged checkpoints, one line each; other warnings as usual
        if str(warning.message).startswith("kerasrl.resume:"):
            print(f"kerasrl train: {str(warning.message).removeprefix('kerasrl.resume: ')}", file=sys.stderr)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    if not isinstance(agent, ALGOS[args.algo]):
        raise CLIError(f"--resume: the checkpoint holds a {type(agent).__name__}, not {args.algo}")
    print(f"Resuming from {data.checkpoint} at {data.env_steps} environment steps and "
          f"{int(agent.num_gradient_steps.numpy())} gradient steps.")
    return agent, data


def _drop_rows_from(progress: Path, epoch: int) -> None:
    """Removes the rows of `epoch` and later from progress.csv: a resumed run writes them again."""
    if not progress.exists():
        return
    with open(progress, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or "epoch" not in rows[0]:
        return
    column = rows[0].index("epoch")
    kept = [rows[0]] + [row for row in rows[1:] if row and int(float(row[column])) < epoch]
    tmp = progress.with_name(progress.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(kept)
    os.replace(tmp, progress)


def train(args: argparse.Namespace) -> dict:
    check_env_id(args.env)
    run_dir = args.out or Path("runs") / f"{args.algo}-{args.env}"
    claim = RunFolderClaim(run_dir)  # before anything reads or writes the folder
    wrote = False
    try:
        earlier = _earlier_run(args, run_dir)
        if args.resume:
            agent, data = _resumed_agent(args, run_dir)
        else:
            agent, data = _new_agent(args)
        # The whole run's epochs; a resumed one continues where its checkpoint stood. On-policy epochs
        # hold whole rollouts; rollouts of whole episodes (ac) have no fixed size: at most one update
        # per step is planned, and StopAtEnvSteps ends the run at --steps.
        updates = data.updates_for(args.steps, from_start=True)
        per_epoch = args.steps_per_epoch
        if isinstance(data, kerasrl.RolloutDataset) and data.batches_per_rollout():
            per_epoch = max(per_epoch // data.batches_per_rollout(), 1) * data.batches_per_rollout()
        initial_epoch, plan = remaining_plan(plan_epochs(updates, per_epoch), int(agent.num_gradient_steps.numpy()))
        if not updates and not args.resume:
            raise CLIError(f"--steps {args.steps} leaves no gradient steps after --learning-starts "
                           f"{args.learning_starts}; raise --steps")
        wrote = True
        return _train(args, run_dir, earlier, agent, data, updates, initial_epoch, plan)
    finally:
        claim.release(wrote)


def _train(args: argparse.Namespace, run_dir: Path, earlier: list[Path], agent: kerasrl.Agent,
           data: Any, updates: int, initial_epoch: int, plan: list[int]) -> dict:
    for path in earlier:  # --overwrite
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    _drop_rows_from(run_dir / "progress.csv", initial_epoch)

    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"}
    config.update(out=str(run_dir), kerasrl_version=kerasrl.__version__, gradient_steps_total=updates,
                  epochs=initial_epoch + len(plan), initial_epoch=initial_epoch)
    if not args.resume or not (run_dir / "config.json").exists():
        _write_json(run_dir / "config.json", config)
    else:
        saved = json.loads((run_dir / "config.json").read_text())
        saved["resumes"] = saved.get("resumes", []) + [config]
        _write_json(run_dir / "config.json", saved)

    eval_seed = None if args.seed is None else args.seed + EVAL_SEED_OFFSET
    callbacks: list[keras.callbacks.Callback] = []
    if args.epoch_eval_episodes:
        callbacks.append(rlcb.EvalCallback(make_env(args.env, args.pomdp), episodes=args.epoch_eval_episodes,
                                           seed=eval_seed))
    callbacks += [
        _CSVLogger(str(run_dir / "progress.csv"), append=True),
        rlcb.TensorBoard(str(run_dir / "tensorboard")),  # flat memory over long runs
    ]
    if args.checkpoint_every:
        callbacks.append(rlcb.Checkpoint(run_dir / "checkpoints", every_steps=args.checkpoint_every))
    if isinstance(data, kerasrl.RolloutDataset) and data.n_steps is None:
        callbacks.append(StopAtEnvSteps(data, args.steps))

    print(f"Training {args.algo} on {args.env}: {args.steps} environment steps = {updates} gradient steps "
          f"in {initial_epoch + len(plan)} epoch(s) of up to {max(plan, default=0)}; run folder {run_dir}")
    start, steps_before = time.perf_counter(), data.env_steps
    try:
        fit_plan(agent, data, plan, initial_epoch, callbacks, args.verbose)
    except KeyboardInterrupt:
        hint = "; continue with the same command and --resume" if args.checkpoint_every else ""
        print(f"\nInterrupted at {data.env_steps} environment steps{hint}.", file=sys.stderr)
        raise
    seconds = time.perf_counter() - start
    env_steps = data.env_steps - steps_before
    if plan:
        print(f"Trained {env_steps} environment steps in {seconds:.1f} s ({env_steps / max(seconds, 1e-9):.0f} steps/s).")

    agent.save(run_dir / "agent.keras")
    print(f"Saved {run_dir / 'agent.keras'}")

    returns = agent.evaluate_env(make_env(args.env, args.pomdp), episodes=args.eval_episodes, seed=eval_seed)
    result = {
        "env": args.env,
        "algo": args.algo,
        "episodes": args.eval_episodes,
        "seed": eval_seed,
        "deterministic": True,
        "mean": float(np.mean(returns)),
        "std": float(np.std(returns)),
        "returns": [float(r) for r in returns],
        "env_steps": int(data.env_steps),
        "gradient_steps": int(agent.num_gradient_steps.numpy()),
        "train_seconds": seconds,
    }
    _write_json(run_dir / "eval.json", result)
    print(f"Evaluation over {args.eval_episodes} episode(s) (deterministic): {summary(returns)}")
    return result


# ------------------------------------------------------------------------ eval
def load_agent(path: Path) -> kerasrl.Agent:
    """The kerasrl agent saved in `path`, or a CLIError saying why not."""
    if not path.exists():
        raise CLIError(f"no such file: {path}")
    try:
        agent = keras.saving.load_model(path)
    except Exception as error:  # a damaged file, not a .keras file, an unknown class
        raise CLIError(f"could not load {path}: {error}") from None
    if not isinstance(agent, kerasrl.Agent):
        raise CLIError(f"{path} holds a {type(agent).__name__}, not a kerasrl agent")
    return agent


def evaluate(args: argparse.Namespace) -> dict:
    agent = load_agent(args.model)
    check_env_id(args.env)
    env = make_env(args.env, args.pomdp, render_mode="human" if args.render else None)
    try:
        check_spaces(agent, env, args.model, args.env)
        returns = agent.evaluate_env(env, episodes=args.episodes, seed=args.seed,
                                     deterministic=not args.stochastic)
    except ValueError as error:  # the environment's spaces do not match the agent's
        raise CLIError(f"cannot run {args.model} on {args.env}: {error}") from None
    finally:
        env.close()
    for i, value in enumerate(returns):
        print(f"episode {i + 1}: return {value:.2f}")
    print(f"{args.env}: {summary(returns)} over {args.episodes} episode(s)")
    result = {"model": str(args.model), "env": args.env, "episodes": args.episodes, "seed": args.seed,
              "deterministic": not args.stochastic, "mean": float(np.mean(returns)),
              "std": float(np.std(returns)), "returns": [float(r) for r in returns]}
    if args.json:
        _write_json(args.json, result)
    return result


# ------------------------------------------------------------------------ play
def play(args: argparse.Namespace) -> dict:
    agent = load_agent(args.model)
    check_env_id(args.env)
    if args.video is not None:
        try:
            video.check_path(args.video)
        except (ValueError, ImportError) as error:
            raise CLIError(str(error)) from None
    env = make_env(args.env, args.pomdp, render_mode="rgb_array" if args.video is not None else "human")
    try:
        check_spaces(agent, env, args.model, args.env)
        returns = agent.play(env, episodes=args.episodes, seed=args.seed, deterministic=not args.stochastic,
                             video=None if args.video is None else str(args.video), fps=args.fps)
    except ValueError as error:
        raise CLIError(f"cannot play {args.model} on {args.env}: {error}") from None
    finally:
        env.close()
    print(f"{args.env}: {summary(returns)} over {args.episodes} episode(s)")
    return {"model": str(args.model), "env": args.env, "returns": [float(r) for r in returns],
            "video": None if args.video is None else str(args.video)}


# ---------------------------------------------------------------------- export
EXPORT_DEFAULTS = {"tf_saved_model": "policy_savedmodel", "onnx": "policy.onnx", "litert": "policy.tflite"}


def export(args: argparse.Namespace) -> Path:
    agent = load_agent(args.model)
    output = args.output or Path(EXPORT_DEFAULTS[args.format])
    if output.exists():
        raise CLIError(f"{output} exists; remove it or give another -o")
    try:
        agent.export_policy(str(output), format=args.format)
    except (ImportError, NotImplementedError, ValueError) as error:
        raise CLIError(f"cannot export {args.model}: {error}") from None
    print(f"Wrote {output} ({args.format}): observations {agent.observation_space} -> actions {agent.action_space}")
    return output


# ------------------------------------------------------------------------ plot
def plot(args: argparse.Namespace) -> Path:
    from kerasrl import plot as plotting

    try:
        written = plotting.plot_runs(args.runs, args.output, title=args.title)
    except (ValueError, ImportError) as error:
        raise CLIError(str(error)) from None
    print(f"Wrote {written} ({len(args.runs)} run(s))")
    return written


# ------------------------------------------------------------------------ tune
def _fixed_value(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def tune(args: argparse.Namespace) -> dict:
    import keras_tuner

    from kerasrl import tuning

    check_env_id(args.env)
    out = args.out or Path("tune") / f"{args.algo}-{args.env}"
    fixed = keras_tuner.HyperParameters()
    for item in args.fixed:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CLIError(f"--fixed takes NAME=VALUE, got {item!r}")
        fixed.Fixed(name, _fixed_value(value))
    objective = keras_tuner.Objective(tuning.OBJECTIVE, "max")
    common = {"objective": objective, "seed": args.seed + 1, "hyperparameters": fixed}
    if args.oracle == "hyperband":
        oracle = keras_tuner.oracles.HyperbandOracle(max_epochs=args.max_epochs, factor=args.factor, **common)
    elif args.oracle == "random":
        oracle = keras_tuner.oracles.RandomSearchOracle(max_trials=args.trials, **common)
    else:
        oracle = keras_tuner.oracles.BayesianOptimizationOracle(max_trials=args.trials, **common)
    try:
        hypermodel = tuning.HYPERMODELS[args.algo](args.env, learning_starts=args.learning_starts)
        declared = keras_tuner.HyperParameters()
        hypermodel.build(declared)
        unknown = sorted(set(fixed.values) - set(declared.values))
        if unknown:
            raise CLIError(f"--fixed: {args.algo} has no hyperparameter {', '.join(unknown)}; "
                           f"it has {', '.join(declared.values)}")
        tuner = tuning.RLTuner(hypermodel, oracle, seed=args.seed, executions_per_trial=args.executions,
                               directory=str(out), project_name="search", overwrite=args.overwrite)
    except ValueError as error:  # e.g. DQN on a Box action space, a --fixed value outside the space
        raise CLIError(f"cannot tune {args.algo} on {args.env}: {error}") from None
    tuner.search(env_steps=args.steps, eval_episodes=args.eval_episodes, verbose=args.verbose)
    best = tuner.oracle.get_best_trials(1)
    if not best:
        raise CLIError(f"no trial finished; see the trial.json files under {out / 'search'}")
    trial = best[0]
    tuner.load_model(trial).save(out / "best_agent.keras")
    result = {"algo": args.algo, "env": args.env, "trial_id": trial.trial_id, "eval_return": trial.score,
              "hyperparameters": trial.hyperparameters.values, "env_steps": args.steps,
              "eval_episodes": args.eval_episodes, "executions": args.executions, "oracle": args.oracle}
    _write_json(out / "best_hyperparameters.json", result)
    print(f"Best trial {trial.trial_id}: eval_return {trial.score:.2f}")
    for name, value in trial.hyperparameters.values.items():
        if not name.startswith("tuner/"):
            print(f"  {name}: {value}")
    print(f"Saved {out / 'best_agent.keras'} and {out / 'best_hyperparameters.json'}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `kerasrl` and `python -m kerasrl`; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train" and args.config is not None:
        train_parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
        try:
            options, args_agent = load_config(args.config, train_parser)
        except CLIError as error:
            parser.exit(2, f"{parser.prog} train: error: {error}\n")
        train_parser.set_defaults(**options)  # the command line, parsed again, overrides the file
        args = parser.parse_args(argv)
        args.agent_options = args_agent
    handler = {"train": train, "eval": evaluate, "play": play, "export": export, "plot": plot, "tune": tune}[args.command]
    try:
        handler(args)
    except CLIError as error:
        parser.exit(2, f"{parser.prog} {args.command}: error: {error}\n")
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
