"""Tune SAC on Pendulum-v1 with keras-tuner, then keep training the winner (issue 5's user story).

    python examples/tune_sac.py            # 8 Bayesian trials of 10k env steps (~20 min on 2 cores)
    python examples/tune_sac.py --quick    # 2 trials of small networks and 600 steps: checks the story works

The search lives in --out/sac_pendulum (run the command again to continue an
interrupted search); the best agent is a compiled .keras model, and its
trial's checkpoint (replay buffer included) lets training go on.
"""

import argparse

import gymnasium as gym
import keras_tuner
import numpy as np

from kerasrl import tuning


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 tiny trials instead of the full search")
    parser.add_argument("--out", default="tune", help="keras-tuner directory")
    parser.add_argument("--seed", type=int, default=0, help="the trials' seed (networks, environment, sampling)")
    args = parser.parse_args()

    fixed = keras_tuner.HyperParameters()  # any entry of the space can be held fixed, the keras-tuner way
    fixed.Fixed("gamma", 0.98)
    if args.quick:
        fixed.Fixed("width", 32)
        fixed.Fixed("depth", 1)
    hypermodel = tuning.SACHyperModel(env_id="Pendulum-v1", learning_starts=200 if args.quick else 1000)
    tuner = tuning.RLTuner(
        hypermodel=hypermodel,
        oracle=keras_tuner.oracles.BayesianOptimizationOracle(
            objective=keras_tuner.Objective("eval_return", "max"), max_trials=2 if args.quick else 8,
            hyperparameters=fixed, seed=1),  # keras-tuner reads seed=0 as no seed
        directory=args.out, project_name="sac_pendulum", seed=args.seed)
    tuner.search(env_steps=600 if args.quick else 10_000, eval_episodes=2 if args.quick else 5,
                 verbose=0 if args.quick else 1)
    tuner.results_summary(3)

    best_agent = tuner.get_best_models(1)[0]  # loaded from the trial's .keras file, compiled
    best_hp = tuner.get_best_hyperparameters(1)[0]
    print("best hyperparameters:", best_hp.values)

    returns = best_agent.evaluate_env(gym.make("Pendulum-v1"), episodes=5, seed=20_000)
    print(f"best agent on fresh episodes: {np.mean(returns):.1f} ± {np.std(returns):.1f}")

    # Keep training the winner from its checkpoint: networks, optimizer state and replay buffer.
    agent, data = tuner.resume_trial(tuner.oracle.get_best_trials(1)[0])
    agent.fit(data, epochs=data.initial_epoch + 1, initial_epoch=data.initial_epoch,
              steps_per_epoch=200 if args.quick else 5000, verbose=0)
    returns = agent.evaluate_env(gym.make("Pendulum-v1"), episodes=5, seed=20_000)
    print(f"after more training, deterministic evaluation: {np.mean(returns):.1f} ± {np.std(returns):.1f}")
    agent.save(f"{args.out}/sac_pendulum_best.keras")


if __name__ == "__main__":
    main()
