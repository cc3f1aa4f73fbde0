"""Discrete SAC on LunarLander-v3 (4 actions), the same story as sac_pendulum.py.

    python examples/sac_lunarlander.py            # 200 epochs x 1000 updates (210k env steps, ~45 min on one core)
    python examples/sac_lunarlander.py --quick    # a short run that checks the whole story works

The same `kerasrl.SAC` class picks the discrete variant from the Discrete action
space: a categorical policy, critics Q(s, .) over all actions, and expectations
over actions taken exactly (Christodoulou 2019). The target entropy is set
lower than the discrete default (0.3 log|A| instead of 0.6 log|A|): at the
default the temperature rises until the entropy bonus of each step alive is
worth more than landing, and the lander learns to hover. An EvalCallback adds
`eval_return` to the logs every 10 epochs, CSVLogger records it, and
EarlyStopping keeps the weights of the best evaluation. It ends above 100
over 10 deterministic episodes (it lands).
"""

import argparse
import math
import os

import gymnasium as gym
import keras
import numpy as np

import kerasrl
from kerasrl import callbacks as rlcb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 short epochs instead of 200 x 1000 updates")
    parser.add_argument("--out", default=".", help="folder for log.csv and sac_lunarlander.keras")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.quick:
        epochs, steps_per_epoch, learning_starts, eval_episodes = 2, 200, 500, 1
    else:
        epochs, steps_per_epoch, learning_starts, eval_episodes = 200, 1000, 10_000, 10
    os.makedirs(args.out, exist_ok=True)
    log_file = os.path.join(args.out, "log.csv")
    model_file = os.path.join(args.out, "sac_lunarlander.keras")

    env = gym.make("LunarLander-v3")
    agent = kerasrl.SAC.from_env(env, hidden=(256, 256), target_entropy=0.3 * math.log(env.action_space.n),
                                 seed=args.seed)
    assert agent.discrete
    agent.compile(optimizer=keras.optimizers.Adam(1e-3))
    data = kerasrl.EnvDataset(env, agent, buffer=kerasrl.ReplayBuffer(1_000_000), batch_size=256,
                              learning_starts=learning_starts, seed=args.seed)
    history = agent.fit(data, epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=[
        rlcb.SoftTargetUpdate(tau=0.005),
        rlcb.EvalCallback(gym.make("LunarLander-v3"), every_epochs=1 if args.quick else 10,
                          episodes=eval_episodes, seed=args.seed + 1000),
        keras.callbacks.CSVLogger(log_file),
        # Keras restores the best evaluation's weights at the end even when it never stops early.
        keras.callbacks.EarlyStopping(monitor="eval_return", mode="max", patience=epochs, restore_best_weights=True),
    ])
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
