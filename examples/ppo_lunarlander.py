"""LunarLander-v3 with PPO at Stable-Baselines3's defaults, 16 environment copies.

    python examples/ppo_lunarlander.py            # 60 rollouts of 1024 steps x 16 copies (~1M env steps)
    python examples/ppo_lunarlander.py --quick    # a short run that checks the whole recipe works

The README's PPO story as written: `PPO.from_env` with its defaults (two 64-64
tanh networks, batch_size 64, n_epochs 10, gamma 0.99, gae_lambda 0.95,
clip_range 0.2), Adam(3e-4), a `RolloutDataset` of 1024 steps per copy, one
rollout per epoch, and an `EvalCallback` of 5 episodes after each. It then
evaluates 20 deterministic episodes, saves the agent and checks that the
loaded file acts the same. At the full budget the evaluation is above 200,
LunarLander's threshold: 234.9 on seed 0 (three runs), 233.1 and 270.7 on
seeds 1 and 2 (`python benchmarks/examples.py ppo_lunarlander`, 2026-12-05).
"""

import argparse
import os

import gymnasium as gym
import keras
import numpy as np

import kerasrl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 rollouts of 64 steps x 4 copies")
    parser.add_argument("--out", default=".", help="folder for ppo_lunar.keras")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    copies, n_steps, epochs, eval_episodes = (4, 64, 2, 2) if args.quick else (16, 1024, 60, 20)
    os.makedirs(args.out, exist_ok=True)
    model_file = os.path.join(args.out, "ppo_lunar.keras")

    ppo = kerasrl.PPO.from_env(gym.make_vec("LunarLander-v3", num_envs=copies), seed=args.seed)
    ppo.compile(optimizer=keras.optimizers.Adam(3e-4))
    data = kerasrl.RolloutDataset(gym.make_vec("LunarLander-v3", num_envs=copies), ppo, n_steps=n_steps,
                                  seed=args.seed)
    ppo.fit(data, epochs=epochs, verbose=2,
            callbacks=[kerasrl.callbacks.EvalCallback(gym.make("LunarLander-v3"), episodes=5, seed=args.seed)])

    returns = ppo.evaluate_env(gym.make("LunarLander-v3"), episodes=eval_episodes, seed=10_000 + args.seed)
    print(f"deterministic evaluation: {np.mean(returns):.1f} ± {np.std(returns):.1f} (min {np.min(returns):.0f}) "
          f"over {eval_episodes} episodes after {data.env_steps} env steps")
    ppo.save(model_file)
    again = keras.saving.load_model(model_file)
    obs = np.stack([gym.make("LunarLander-v3").observation_space.sample() for _ in range(100)])
    same = np.array_equal(again.act(obs, deterministic=True), ppo.act(obs, deterministic=True))
    print(f"saved {model_file}; the loaded agent acts the same: {same}")


if __name__ == "__main__":
    main()
