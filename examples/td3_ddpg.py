"""TD3 on HalfCheetahBulletEnv-v0 and DDPG with Ornstein-Uhlenbeck noise on Pendulum-v1 (issue 4's user story).

    python examples/td3_ddpg.py            # TD3: 100 epochs x 1000 updates; DDPG: 20 x 1000
    python examples/td3_ddpg.py --quick    # short runs that check the whole story works

Each run writes a run folder (progress.csv with episode and eval returns,
config.json, the .keras agent) under --out; draw them with

    kerasrl plot OUT/td3-halfcheetah OUT/ddpg-pendulum -o curve.png
"""

import argparse
import json
import os

import gymnasium as gym
import keras
import numpy as np

import kerasrl
from kerasrl import callbacks as rlcb, noise


def run_folder(out: str, name: str, algo: str, env_id: str, seed: int) -> tuple[str, list]:
    """A folder and the callbacks that fill it like `kerasrl train` does."""
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"algo": algo, "env": env_id, "seed": seed}, f)
    return folder, [rlcb.EvalCallback(gym.make(env_id), episodes=3, seed=seed + 10_000),
                    keras.callbacks.CSVLogger(os.path.join(folder, "progress.csv"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few short epochs instead of the full budgets")
    parser.add_argument("--out", default="runs", help="folder for the run folders")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    td3_epochs, ddpg_epochs, steps_per_epoch, learning_starts = ((2, 2, 100, 500) if args.quick
                                                                 else (100, 20, 1000, 10_000))

    env = gym.make("HalfCheetahBulletEnv-v0")  # registered in gymnasium by `import kerasrl`
    agent = kerasrl.TD3.from_env(env, hidden=(400, 300), policy_delay=2, target_noise=0.2, target_noise_clip=0.5,
                                 seed=args.seed)
    agent.compile(optimizer=keras.optimizers.Adam(7e-4))
    data = kerasrl.EnvDataset(env, agent, buffer=kerasrl.ReplayBuffer(200_000), batch_size=256,
                              learning_starts=learning_starts, action_noise=noise.Gaussian(0.1), seed=args.seed)
    folder, logs = run_folder(args.out, "td3-halfcheetah", "td3", "HalfCheetahBulletEnv-v0", args.seed)
    # TD3 can collapse late in a run (3 runs in 9 here did, after evaluating 688 to 1580): keep the weights
    # of the best evaluation, Keras' way (EarlyStopping restores them at the end even when it never stops).
    keep_best = keras.callbacks.EarlyStopping(monitor="eval_return", mode="max", patience=td3_epochs,
                                              restore_best_weights=True)
    agent.fit(data, epochs=td3_epochs, steps_per_epoch=steps_per_epoch,
              callbacks=[rlcb.SoftTargetUpdate(tau=0.005), *logs, keep_best])
    agent.save(os.path.join(folder, "agent.keras"))

    pendulum = gym.make("Pendulum-v1")
    ddpg = kerasrl.DDPG.from_env(pendulum, seed=args.seed)
    ddpg.compile(actor_optimizer=keras.optimizers.Adam(1e-3), critic_optimizer=keras.optimizers.Adam(2e-3))
    data = kerasrl.EnvDataset(pendulum, ddpg, buffer=kerasrl.ReplayBuffer(50_000), batch_size=64,
                              action_noise=noise.OrnsteinUhlenbeck(sigma=0.2, theta=0.15, dt=1e-2), seed=args.seed)
    folder, logs = run_folder(args.out, "ddpg-pendulum", "ddpg", "Pendulum-v1", args.seed)
    ddpg.fit(data, epochs=ddpg_epochs, steps_per_epoch=steps_per_epoch, callbacks=logs)
    ddpg.save(os.path.join(folder, "agent.keras"))

    for name, trained, env_id in (("TD3", agent, "HalfCheetahBulletEnv-v0"), ("DDPG", ddpg, "Pendulum-v1")):
        returns = trained.evaluate_env(gym.make(env_id), episodes=3 if args.quick else 10, seed=args.seed + 1)
        print(f"{name} on {env_id}: deterministic evaluation {np.mean(returns):.1f} ± {np.std(returns):.1f}")
    print(f"run folders under {args.out}; draw them with: kerasrl plot {args.out}/td3-halfcheetah "
          f"{args.out}/ddpg-pendulum -o curve.png")


if __name__ == "__main__":
    main()
