"""Dueling double DQN with prioritized replay and 3-step returns on LunarLander-v3.

    python examples/dqn_lunarlander.py            # 100 epochs x 1000 updates (100k env steps)
    python examples/dqn_lunarlander.py --quick    # a short run that checks the whole story works

rl-zoo's LunarLander settings (Adam 6.3e-4, batch 128, buffer 50k, 4 env steps
then 4 updates, the target copied every 250 updates, epsilon from 1.0 to 0.1 over
the first 12k env steps) with prioritized replay (beta from 0.4 to 1.0 over the
100k stored transitions), 3-step returns and the learning rate decaying
linearly to 0 over the run. PriorityRefresh writes every update's TD errors
back as priorities. benchmarks/examples.py measures what it reaches.
"""

import argparse
import os

import gymnasium as gym
import keras
import numpy as np

import kerasrl
from kerasrl import callbacks as rlcb, schedules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 short epochs instead of 100 x 1000 updates")
    parser.add_argument("--out", default=".", help="folder for dqn_lunar.keras")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    epochs, steps_per_epoch, eval_episodes = (2, 100, 1) if args.quick else (100, 1000, 10)
    os.makedirs(args.out, exist_ok=True)
    model_file = os.path.join(args.out, "dqn_lunar.keras")

    env = gym.make("LunarLander-v3")
    agent = kerasrl.DQN.from_env(env, dueling=True, double=True, hidden=(256, 256), seed=args.seed)
    updates = epochs * steps_per_epoch
    agent.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.PolynomialDecay(6.3e-4, updates, 0.0)))
    buffer = kerasrl.PrioritizedReplayBuffer(50_000, alpha=0.6, beta=schedules.Linear(0.4, 1.0, updates), n_step=3)
    data = kerasrl.EnvDataset(env, agent, buffer=buffer, batch_size=128, train_freq=4, gradient_steps=4,
                              exploration=schedules.Piecewise([(0, 1.0), (12_000, 0.1)]), seed=args.seed)
    history = agent.fit(data, epochs=epochs, steps_per_epoch=steps_per_epoch,
                        callbacks=[rlcb.HardTargetUpdate(every=250), rlcb.PriorityRefresh()])
    print("last episode_return (mean of the last 10 training episodes):", history.history["episode_return"][-1])

    returns = agent.evaluate_env(gym.make("LunarLander-v3"), episodes=eval_episodes, seed=args.seed + 1)
    print(f"deterministic evaluation: {np.mean(returns):.1f} ± {np.std(returns):.1f} over {eval_episodes} episodes")
    agent.save(model_file)
    again = keras.saving.load_model(model_file)
    obs, _ = env.reset(seed=3)
    assert again.act(obs, deterministic=True) == agent.act(obs, deterministic=True)
    print(f"saved {model_file}; the loaded agent acts the same")


if __name__ == "__main__":
    main()
