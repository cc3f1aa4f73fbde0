"""CartPole-v1 with the one-network actor-critic of Keras' first RL example.

    python examples/actor_critic_cartpole.py            # up to 600 episodes, one update each
    python examples/actor_critic_cartpole.py --quick    # a short run that checks the whole recipe works

The README's on-policy story as written: a shared 128-unit torso with a
softmax actor head and a value head, Monte-Carlo returns normalised over each
episode, a Huber critic loss, Adam(1e-2), one episode per update
(`RolloutDataset(episodes_per_batch=1)`) for up to 30 epochs of 20 updates.

One-episode updates at Adam(1e-2) reach 500 early and can fall off it again, so
where training stops would decide the result. Keras' own answer keeps the
policy that evaluated best: an EvalCallback writes `eval_return` after every
epoch and EarlyStopping watches it, stops once it has not improved for
`patience` epochs and restores the best epoch's weights. The script then
evaluates 20 deterministic episodes on other seeds, saves the agent and checks
that the loaded file acts the same.
"""

import argparse
import os

import gymnasium as gym
import keras
import numpy as np

import kerasrl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 epochs of 5 episodes instead of 30 of 20")
    parser.add_argument("--out", default=".", help="folder for actor_critic_cartpole.keras")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    epochs, steps_per_epoch, eval_episodes = (2, 5, 2) if args.quick else (30, 20, 20)
    os.makedirs(args.out, exist_ok=True)
    model_file = os.path.join(args.out, "actor_critic_cartpole.keras")

    env = gym.make("CartPole-v1")
    ac = kerasrl.ActorCritic.from_env(env, hidden=(128,), seed=args.seed)
    ac.compile(optimizer=keras.optimizers.Adam(1e-2))
    keep_best = [kerasrl.callbacks.EvalCallback(gym.make("CartPole-v1"), episodes=5, seed=args.seed),
                 keras.callbacks.EarlyStopping(monitor="eval_return", mode="max", patience=5,
                                               restore_best_weights=True)]
    history = ac.fit(kerasrl.RolloutDataset(env, ac, episodes_per_batch=1, seed=args.seed), epochs=epochs,
                     steps_per_epoch=steps_per_epoch, callbacks=keep_best, verbose=2)
    print(f"mean return of the last 10 training episodes: {history.history['episode_return'][-1]:.1f}")

    returns = ac.evaluate_env(gym.make("CartPole-v1"), episodes=eval_episodes, seed=10_000 + args.seed)
    print(f"deterministic evaluation: {np.mean(returns):.1f} ± {np.std(returns):.1f} (min {np.min(returns):.0f}) "
          f"over {eval_episodes} episodes")
    ac.save(model_file)
    again = keras.saving.load_model(model_file)
    obs = np.stack([env.observation_space.sample() for _ in range(100)])
    same = np.array_equal(again.act(obs, deterministic=True), ac.act(obs, deterministic=True))
    print(f"saved {model_file}; the loaded agent acts the same: {same}")


if __name__ == "__main__":
    main()
