"""The PyBullet locomotion environments kerasrl registers with gymnasium."""

from __future__ import annotations

import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import kerasrl

ENV_IDS = list(kerasrl.envs.BULLET_ENVS)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_env_checker_and_rgb_rendering(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    assert env.spec.max_episode_steps == 1000
    assert isinstance(env.observation_space, gym.spaces.Box) and isinstance(env.action_space, gym.spaces.Box)
    check_env(env.unwrapped, skip_render_check=False)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8 and frame.std() > 0
    env.close()


def test_half_cheetah_seeding_and_time_limit():
    env = gym.make("HalfCheetahBulletEnv-v0")
    first, _ = env.reset(seed=3)
    again, _ = env.reset(seed=3)
    other, _ = env.reset(seed=4)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    env.action_space.seed(0)
    for t in range(1, 1001):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert obs.dtype == np.float32 and np.isfinite(reward) and not terminated
        if truncated:
            break
    assert t == 1000 and truncated  # the cheetah never falls; the 1000-step limit ends it
    env.close()


def test_registration_leaves_no_legacy_modules_behind():
    gym.make("HopperBulletEnv-v0").close()
    assert "gym" not in sys.modules and "pybullet_envs" not in sys.modules


def test_td3_fits_a_bullet_env():
    env = gym.make("InvertedPendulumBulletEnv-v0")
    agent = kerasrl.TD3.from_env(env, hidden=(32, 32), seed=0)
    agent.compile(optimizer="adam")
    data = kerasrl.EnvDataset(env, agent, buffer=kerasrl.ReplayBuffer(1000), batch_size=32, learning_starts=64, seed=0)
    history = agent.fit(data, epochs=1, steps_per_epoch=50, verbose=0)
    assert np.isfinite(history.history["critic_loss"][0])
    assert len(agent.evaluate_env(gym.make("InvertedPendulumBulletEnv-v0"), episodes=2, seed=0)) == 2
