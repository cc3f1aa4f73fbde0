"""Short learning smoke tests: with fixed seeds, SAC beats the random policy.

Measured on a 2-core CPU (eval mean over 5 episodes, seeds 0-2 / 0-3):
Pendulum-v1 after 4000 updates: -101, -126, -328 (random: about -1250);
CartPole-v1 after 1500 updates: 193, 279, 332, 259 (random: about 22).
The thresholds leave a wide margin for run-to-run variation (the collector
runs in a tf.data thread, so runs are not bit-identical).
Deselect with `-m "not learning"`.
"""

import gymnasium as gym
import keras
import numpy as np
import pytest

import kerasrl
from support import random_returns

pytestmark = pytest.mark.learning


def train(env_id: str, updates: int, seed: int = 0):
    env = gym.make(env_id)
    agent = kerasrl.SAC.from_env(env, hidden=(64, 64), seed=seed)
    agent.compile(optimizer=keras.optimizers.Adam(1e-3))
    data = kerasrl.EnvDataset(env, agent, buffer=kerasrl.ReplayBuffer(10_000), batch_size=64,
                              learning_starts=500, seed=seed)
    history = agent.fit(data, epochs=updates // 500, steps_per_epoch=500, verbose=0)
    return agent, history


def test_sac_learns_pendulum():
    agent, history = train("Pendulum-v1", 4000)
    random = random_returns("Pendulum-v1", episodes=5, seed=1).mean()
    returns = agent.evaluate_env(gym.make("Pendulum-v1"), episodes=5, seed=1)
    assert returns.mean() > -700 and returns.mean() > random + 400, (returns, random)
    train_returns = history.history["episode_return"]
    assert train_returns[-1] > train_returns[0] + 300, train_returns
    assert np.all(np.isfinite(history.history["critic_loss"]))


def test_discrete_sac_learns_cartpole():
    agent, history = train("CartPole-v1", 1500)
    random = random_returns("CartPole-v1", episodes=5, seed=1).mean()
    returns = agent.evaluate_env(gym.make("CartPole-v1"), episodes=5, seed=1)
    assert returns.mean() > 100 and returns.mean() > 3 * random, (returns, random)
    assert history.history["episode_return"][-1] > history.history["episode_return"][0]
