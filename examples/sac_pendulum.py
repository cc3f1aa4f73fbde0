"""SAC on Pendulum-v1: the kerasrl user story as a script.

    python examples/sac_pendulum.py            # 20 epochs x 1000 updates (~21k env steps)
    python examples/sac_pendulum.py --quick    # a short run that checks the whole story works

The agent is a keras.Model: it trains with fit over an EnvDataset (a tf.data
pipeline that steps the environment with the agent's policy), logs through
Keras callbacks and saves as one .keras file that keras.saving.load_model reads.

It ends above -200 over 10 deterministic episodes (the pendulum swung up and
held): `python benchmarks/examples.py sac_pendulum` measured -122.5, -120.7 and
-122.2 on seed 0 and -119.7, -117.2 on seeds 1 and 2.
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
    parser.add_argument("--quick", action="store_true", help="2 short epochs instead of 20 x 1000 updates")
    parser.add_argument("--out", default=".", help="folder for log.csv and sac_pendulum.keras")
    parser.add_argument("--seed", type=int, default=0, help="the EnvDataset's seed (collection and sampling)")
    args = parser.parse_args()
    epochs, steps_per_epoch, learning_starts, eval_episodes = (2, 200, 200, 2) if args.quick else (20, 1000, 1000, 10)
    os.makedirs(args.out, exist_ok=True)
    log_file = os.path.join(args.out, "log.csv")
    model_file = os.path.join(args.out, "sac_pendulum.keras")

    env = gym.make("Pendulum-v1")
    agent = kerasrl.SAC.from_env(env)
    agent.compile(optimizer=keras.optimizers.Adam(1e-3))
    data = kerasrl.EnvDataset(env, agent, buffer=kerasrl.ReplayBuffer(100_000), batch_size=256,
                              learning_starts=learning_starts, seed=args.seed)
    history = agent.fit(data, epochs=epochs, steps_per_epoch=steps_per_epoch,
                        callbacks=[rlcb.SoftTargetUpdate(tau=0.005), keras.callbacks.CSVLogger(log_file)])
    print("last episode_return (mean of the last 10 training episodes):", history.history["episode_return"][-1])

    returns = agent.evaluate_env(gym.make("Pendulum-v1"), episodes=eval_episodes, seed=1)
    print(f"deterministic evaluation: {np.mean(returns):.1f} ± {np.std(returns):.1f} over {eval_episodes} episodes")

    agent.save(model_file)
    again = keras.saving.load_model(model_file)
    obs, _ = env.reset(seed=3)
    assert (again.act(obs, deterministic=True) == agent.act(obs, deterministic=True)).all()
    print(f"saved {model_file}; the loaded agent acts the same")


if __name__ == "__main__":
    main()
