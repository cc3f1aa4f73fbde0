"""kerasrl.envs.pomdp: the LSTM-TD3 paper's partially observed tasks."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import kerasrl  # noqa: F401  (registers the Bullet tasks)
from kerasrl.envs import pomdp


def rollout(env: gym.Env, steps: int, seed: int) -> np.ndarray:
    """Observations of `steps` random-action steps (resetting at episode ends), actions seeded by `seed`."""
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    observations = [obs]
    for _ in range(steps):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
        observations.append(obs)
    return np.array(observations)


@pytest.mark.parametrize("env_id", list(pomdp.VELOCITY_FREE))
def test_remove_velocity_keeps_the_table_entries_of_every_listed_task(env_id):
    size, keep = pomdp.VELOCITY_FREE[env_id]
    hidden = pomdp.make(env_id, "remove_velocity")
    assert hidden.observation_space.shape == (len(keep),)
    seen = rollout(hidden, 20, seed=1)
    full = rollout(gym.make(env_id), 20, seed=1)
    assert full.shape[1] == size
    np.testing.assert_array_equal(seen, full[:, list(keep)])
    assert all(hidden.observation_space.contains(o) for o in seen)
    hidden.close()


def test_pendulum_hides_the_angular_velocity_and_half_cheetah_the_torso_velocity():
    assert pomdp.VELOCITY_FREE["Pendulum-v1"] == (3, (0, 1))
    size, keep = pomdp.VELOCITY_FREE["HalfCheetahBulletEnv-v0"]
    assert size == 26 and set(range(26)) - set(keep) == {3, 4, 5}  # as the paper's wrapper


@pytest.mark.parametrize("kind", ["flickering", "random_noise", "random_sensor_missing",
                                  "remove_velocity_and_flickering", "random_noise_and_random_sensor_missing"])
def test_wrapped_tasks_pass_gymnasiums_checker(kind):
    check_env(pomdp.make("Pendulum-v1", kind), skip_render_check=True)


def test_flickering_zeroes_whole_observations_at_its_rate_reproducibly():
    env = pomdp.make("Pendulum-v1", "flickering", flicker_prob=0.2)
    seen = rollout(env, 3000, seed=0)
    clean = rollout(gym.make("Pendulum-v1"), 3000, seed=0)
    dropped = np.all(seen == 0, axis=1)
    assert 0.17 < dropped.mean() < 0.23
    np.testing.assert_array_equal(seen[~dropped], clean[~dropped])  # the task itself is untouched
    np.testing.assert_array_equal(rollout(env, 3000, seed=0), seen)
    assert not np.array_equal(rollout(env, 3000, seed=1)[:, 0] == 0, dropped)


def test_random_noise_adds_gaussian_noise_of_sigma():
    noisy = rollout(pomdp.make("Pendulum-v1", "random_noise", noise_sigma=0.1), 3000, seed=0)
    clean = rollout(gym.make("Pendulum-v1"), 3000, seed=0)
    error = noisy - clean
    assert abs(error.mean()) < 0.01 and 0.095 < error.std() < 0.105
    assert noisy.dtype == np.float32


def test_random_sensor_missing_zeroes_single_entries_at_its_rate():
    seen = rollout(pomdp.make("Pendulum-v1", "random_sensor_missing", missing_prob=0.1), 3000, seed=0)
    clean = rollout(gym.make("Pendulum-v1"), 3000, seed=0)
    missing = (seen == 0) & (clean != 0)
    assert 0.09 < missing.mean() < 0.11
    assert np.any(missing.sum(axis=1) == 1)  # entries go missing one by one, not whole observations
    np.testing.assert_array_equal(seen[~missing & (seen != 0)], clean[~missing & (seen != 0)])


def test_pairs_apply_both_kinds_left_to_right():
    env = pomdp.make("Pendulum-v1", "remove_velocity_and_random_noise", noise_sigma=0.1)
    assert env.observation_space.shape == (2,)
    error = rollout(env, 2000, seed=0) - rollout(gym.make("Pendulum-v1"), 2000, seed=0)[:, :2]
    assert 0.09 < error.std() < 0.11


def test_bad_kinds_tasks_and_parameters_are_named():
    with pytest.raises(ValueError, match="Unknown POMDP kind 'blur'.*remove_velocity, flickering"):
        pomdp.make("Pendulum-v1", "blur")
    with pytest.raises(ValueError, match="Unknown POMDP kind"):
        pomdp.make("Pendulum-v1", "flickering_and_flickering")
    with pytest.raises(ValueError, match="'BipedalWalker-v3'.*known tasks: Pendulum-v1"):
        pomdp.make("BipedalWalker-v3", "remove_velocity")
    with pytest.raises(ValueError, match="flicker_prob must be a probability"):
        pomdp.make("Pendulum-v1", "flickering", flicker_prob=1.5)
    with pytest.raises(ValueError, match="Box observation space"):
        pomdp.wrap(gym.make("FrozenLake-v1"), "random_noise")
    env = pomdp.RemoveVelocity(gym.make("BipedalWalker-v3"), keep=[0, 1])  # any task, indices given
    assert env.observation_space.shape == (2,)
