"""Tuning benchmark: a keras-tuner search over an agent, then an honest look at its winner.

    python benchmarks/tune.py --algo sac --env Pendulum-v1 --trials 8 --steps 10000 --out /tmp/tune-bench

Runs `kerasrl.tuning.RLTuner` with BayesianOptimization (`--trials` trials of
`--steps` env steps, scored by `--eval-episodes` deterministic episodes), then
one trial of the hypermodel's default hyperparameters with the same budget and
seed, and evaluates both agents on `--final-episodes` fresh episodes (seeds
20000+): a trial's score is the best of several noisy estimates, so the fresh
episodes are the figure to quote. Prints JSON lines on stdout (appended to
--results too): one per trial and a summary with the command to reproduce.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import _claim_stdout, emit, log, machine_info, now, parse_assignments, tf_versions  # noqa: E402

FINAL_SEED = 20_000  # fresh episodes, apart from training (seed) and trial scoring (10000 + seed)


def fixed_defaults(hypermodel, fixed: dict) -> "keras_tuner.HyperParameters":  # noqa: F821
    """The hypermodel's space with every entry fixed: at the search's fixed value, or at its default."""
    import keras_tuner

    declared = keras_tuner.HyperParameters()
    for name, value in fixed.items():
        declared.Fixed(name, value)
    hypermodel.build(declared)
    defaults = keras_tuner.HyperParameters()
    for name, value in declared.values.items():
        defaults.Fixed(name, value)
    return defaults


def search(args: argparse.Namespace, project: str, oracle, hypermodel) -> tuple:
    from kerasrl import tuning

    tuner = tuning.RLTuner(hypermodel, oracle, seed=args.seed, directory=args.out, project_name=project,
                           overwrite=True, executions_per_trial=args.executions, reproducible=not args.fast)
    start = time.perf_counter()
    tuner.search(env_steps=args.steps, eval_episodes=args.eval_episodes, verbose=args.verbose)
    return tuner, time.perf_counter() - start


def final_eval(agent, env_id: str, episodes: int) -> dict:
    import gymnasium as gym
    import numpy as np

    returns = agent.evaluate_env(gym.make(env_id), episodes=episodes, seed=FINAL_SEED)
    return {"mean": float(np.mean(returns)), "std": float(np.std(returns))}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", default="sac", choices=["sac", "dqn", "td3", "ddpg"])
    p.add_argument("--env", default="Pendulum-v1")
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--steps", type=int, default=10_000, help="env steps per trial")
    p.add_argument("--eval-episodes", type=int, default=5, help="deterministic episodes scoring a trial")
    p.add_argument("--final-episodes", type=int, default=20, help="fresh episodes for the best and default agents")
    p.add_argument("--learning-starts", type=int, default=1000)
    p.add_argument("--executions", type=int, default=1, help="seeds per trial (seed, seed + 1, ...)")
    p.add_argument("--fixed", nargs="+", default=[], metavar="NAME=VALUE", help="hold entries fixed (JSON values)")
    p.add_argument("--fast", action="store_true", help="RLTuner(reproducible=False): pipelined, not bit-repeatable")
    p.add_argument("--seed", type=int, default=0, help="trial seed; the oracle's is seed + 1 (keras-tuner reads 0 as none)")
    p.add_argument("--out", default="tune-bench", help="keras-tuner directory")
    p.add_argument("--results", default=None, help="also append the JSON lines to this file")
    p.add_argument("--verbose", type=int, default=0)
    args = p.parse_args(argv)
    _claim_stdout()

    import keras_tuner

    from kerasrl import tuning

    hypermodel = tuning.HYPERMODELS[args.algo](args.env, learning_starts=args.learning_starts)
    objective = keras_tuner.Objective(tuning.OBJECTIVE, "max")
    log(f"search: {args.trials} trials of {args.steps} env steps, {args.algo} on {args.env}")
    fixed_values = parse_assignments(args.fixed, "--fixed")
    fixed = keras_tuner.HyperParameters()
    for name, value in fixed_values.items():
        fixed.Fixed(name, value)
    oracle = keras_tuner.oracles.BayesianOptimizationOracle(objective=objective, max_trials=args.trials,
                                                            seed=args.seed + 1, hyperparameters=fixed)
    tuner, search_seconds = search(args, f"{args.algo}-search", oracle, hypermodel)
    for trial in sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id):
        emit({"kind": "trial", "trial_id": trial.trial_id, "status": trial.status, "eval_return": trial.score,
              "hyperparameters": trial.hyperparameters.values}, args.results)
    best = tuner.oracle.get_best_trials(1)[0]
    best_final = final_eval(tuner.load_model(best), args.env, args.final_episodes)

    log("the default hyperparameters, same budget and seed")
    oracle = keras_tuner.oracles.RandomSearchOracle(objective=objective, max_trials=1, seed=args.seed + 1,
                                                    hyperparameters=fixed_defaults(hypermodel, fixed_values))
    default_tuner, default_seconds = search(args, f"{args.algo}-defaults", oracle, hypermodel)
    default = default_tuner.oracle.get_best_trials(1)[0]
    default_final = final_eval(default_tuner.load_model(default), args.env, args.final_episodes)

    emit({"kind": "summary", "algo": args.algo, "env": args.env, "trials": args.trials, "steps": args.steps,
          "eval_episodes": args.eval_episodes, "seed": args.seed, "executions": args.executions, "fixed": fixed_values,
          "reproducible": not args.fast, "oracle": "bayesian",
          "best": {"trial_id": best.trial_id, "eval_return": best.score, "final": best_final,
                   "hyperparameters": best.hyperparameters.values},
          "default": {"eval_return": default.score, "final": default_final,
                      "hyperparameters": default.hyperparameters.values},
          "search_seconds": search_seconds, "default_trial_seconds": default_seconds,
          "final_episodes": args.final_episodes, "command": "python " + shlex.join(sys.argv),
          "versions": tf_versions(), "machine": machine_info(), "date": now()}, args.results)


if __name__ == "__main__":
    main()
