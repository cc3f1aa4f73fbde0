"""Discrete SAC on CartPole-v1 (2 actions), the same story as sac_pendulum.py.

    python examples/sac_cartpole.py            # 40 epochs x 1000 updates (41k env steps)
    python examples/sac_cartpole.py --quick    # a short run that checks the whole story works

The same `kerasrl.SAC` class picks the discrete variant from the Discrete action
space: a categorical policy, critics Q(s, .) over all actions, and expectations
over actions taken exactly (Christodoulou 2019), with the discrete default
target entropy 0.6 log|A|. An EvalCallback adds `eval_return` to the logs
after every epoch and CSVLogger records it. It ends above 475 (gymnasium's
threshold for CartPole-v1) over 10 deterministic episodes.
"""

import argparse
import os

import gymnasium as gym
import keras
import numpy as np

import kerasrl
from kerasrl import callbacks as rlcb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 short epochs instead of 40 x 1000 updates")
    parser.add_argument("--out", default=".", help="folder for log.csv and sac_cartpole.keras")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        epochs, steps_per_epoch, learning_starts, eval_episodes = 2, 200, 500, 1
    else:
        epochs, steps_per_epoch, learning_starts, eval_episodes = 40, 1000, 1000, 10
    os.makedirs(args.out, exist_ok=True)
    log_file = os.path.join(args.out, "log.csv")
    model_file = os.path.join(args.out, "sac_cartpole.keras")

    env = gym.make("CartPole-v1")
    agent = kerasrl.SAC.from_env(env, hidden=(64, 64), seed=args.seed)
    assert agent.discrete
    agent.compile(optimizer=keras.optimizers.Adam(1e-3))
    data = kerasrl.EnvDataset(env, agent, buffer=kerasrl.ReplayBuffer(100_000), batch_size=256,
                              learning_starts=learning_starts, seed=args.seed)
    history = agent.fit(data, epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=[
        rlcb.SoftTargetUpdate(tau=0.005),
        rlcb.EvalCallback(gym.make("CartPole-v1"), episodes=eval_episodes, seed=args.seed + 1000),
        keras.callbacks.CSVLogger(log_file),
    ])
    print("last episode_return (mean of the last 10 training episodes):", history.history["episode_return"][-1])

    returns = agent.evaluate_env(gym.make("CartPole-v1"), episodes=eval_episodes, seed=args.seed + 1)
    print(f"deterministic evaluation: {np.mean(returns):.1f} ± {np.std(returns):.1f} over {eval_episodes} episodes")

    agent.save(model_file)
    again = keras.saving.load_model(model_file)
    obs, _ = env.reset(seed=3)
    assert again.act(obs, deterministic=True) == agent.act(obs, deterministic=True)
    print(f"saved {model_file}; the loaded agent acts the same")


if __name__ == "__main__":
    main()
