"""Bad inputs fail early with a ValueError whose message names the problem."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import TimeLimit

import kerasrl
from support import HIDDEN, CountingEnv, NanRewardWrapper, make_data, make_sac, stored

BOX3 = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)


# ------------------------------------------------------------------ spaces
@pytest.mark.parametrize("space,role,words", [
    (gym.spaces.MultiDiscrete([2, 3]), "action", ["action space", "MultiDiscrete"]),
    (gym.spaces.Dict({"a": gym.spaces.Discrete(2)}), "action", ["action space", "Dict"]),
    (gym.spaces.Box(-np.inf, np.inf, (2,), np.float32), "action", ["action space", "finite"]),
    (gym.spaces.Box(np.array([-1.0, -np.inf], np.float32), np.array([1.0, 1.0], np.float32)), "action",
     ["action space", "finite"]),
    (gym.spaces.Dict({"a": BOX3}), "observation", ["observation space", "Dict"]),
    (gym.spaces.MultiBinary(4), "observation", ["observation space", "MultiBinary"]),
    (gym.spaces.Tuple([BOX3, BOX3]), "observation", ["observation space", "Tuple"]),
])
def test_unsupported_spaces(space, role, words):
    args = (BOX3, space) if role == "action" else (space, gym.spaces.Discrete(2))
    with pytest.raises(ValueError) as info:
        kerasrl.SAC(*args, hidden=HIDDEN)
    for word in words:
        assert word in str(info.value)


def test_unsupported_space_of_a_real_env():
    env = gym.make("Blackjack-v1")  # Tuple observations
    with pytest.raises(ValueError, match="Unsupported observation space Tuple"):
        kerasrl.SAC.from_env(env, hidden=HIDDEN)


def test_box_observation_with_infinite_bounds_is_fine(cartpole):
    agent = kerasrl.SAC.from_env(cartpole, hidden=HIDDEN)  # CartPole's velocities are unbounded
    assert cartpole.action_space.contains(agent.act(cartpole.reset(seed=0)[0]))


def test_gamma_out_of_range():
    with pytest.raises(ValueError, match="gamma"):
        kerasrl.SAC(BOX3, gym.spaces.Discrete(2), gamma=1.5)


# --------------------------------------------------------------------- act
@pytest.mark.parametrize("obs,words", [
    (np.zeros(4, np.float32), ["shape (4,)", "(3,)"]),
    (np.zeros((2, 4), np.float32), ["shape (2, 4)", "(3,)"]),
    (np.zeros((2, 2, 3), np.float32), ["shape (2, 2, 3)"]),
    (np.array(["a", "b", "c"]), ["numeric", "dtype"]),
    (np.array([None, None, None], dtype=object), ["numeric", "dtype object"]),
    ([[1.0, "x", 2.0]], ["numeric", "dtype"]),
])
def test_act_rejects_bad_observations(pendulum, obs, words):
    agent = make_sac(pendulum, compile=False)
    with pytest.raises(ValueError) as info:
        agent.act(obs)
    message = str(info.value)
    assert "observation" in message
    for word in words:
        assert word in message


def test_act_discrete_observations_need_integers():
    env = gym.make("FrozenLake-v1")
    agent = make_sac(env, compile=False)
    with pytest.raises(ValueError, match="integers"):
        agent.act(np.float32(3.0))
    assert env.action_space.contains(agent.act(3))


@pytest.mark.parametrize("obs", [-1, 16, np.array([0, 3, 16]), np.array([-2, 0])])
def test_act_discrete_observations_out_of_range(obs):
    env = gym.make("FrozenLake-v1")  # Discrete(16)
    agent = make_sac(env, compile=False)
    with pytest.raises(ValueError, match=r"observation.*integers in \[0, 15\]"):
        agent.act(obs)


def test_act_discrete_observations_with_start():
    agent = kerasrl.SAC(gym.spaces.Discrete(5, start=3), gym.spaces.Discrete(2), hidden=HIDDEN, seed=0)
    assert agent.act(np.array([3, 5, 7])).shape == (3,)
    with pytest.raises(ValueError, match=r"integers in \[3, 7\]"):
        agent.act(2)  # would have wrapped around to the one-hot of state 7


def test_act_accepts_lists_and_other_numeric_dtypes(pendulum):
    agent = make_sac(pendulum, compile=False)
    for obs in ([0.1, 0.2, 0.3], np.array([1, 0, 2], np.int64), np.array([0.5, 0.5, 0.5], np.float64)):
        assert pendulum.action_space.contains(agent.act(obs))


# -------------------------------------------------------------- EnvDataset
def test_batch_size_larger_than_buffer(pendulum):
    agent = make_sac(pendulum, compile=False)
    with pytest.raises(ValueError, match="batch_size 64 is larger than the replay buffer's capacity 32"):
        kerasrl.EnvDataset(pendulum, agent, buffer=kerasrl.ReplayBuffer(32), batch_size=64)


@pytest.mark.parametrize("kwargs,word", [
    ({"batch_size": 0}, "batch_size"),
    ({"train_freq": 0}, "train_freq"),
    ({"gradient_steps": 0}, "gradient_steps"),
    ({"learning_starts": -1}, "learning_starts"),
])
def test_env_dataset_bad_settings(pendulum, kwargs, word):
    agent = make_sac(pendulum, compile=False)
    with pytest.raises(ValueError, match=word):
        kerasrl.EnvDataset(pendulum, agent, **kwargs)


def test_env_dataset_rejects_non_env(pendulum):
    agent = make_sac(pendulum, compile=False)
    with pytest.raises(ValueError, match="gymnasium Env"):
        kerasrl.EnvDataset(object(), agent)


def test_env_agent_observation_space_mismatch(pendulum, cartpole):
    agent = make_sac(pendulum, compile=False)
    with pytest.raises(ValueError, match="observation space .* does not match"):
        kerasrl.EnvDataset(cartpole, agent)


def test_env_agent_action_space_mismatch():
    agent = make_sac(CountingEnv(discrete=False), compile=False)
    with pytest.raises(ValueError, match="action space Discrete\\(3\\) does not match"):
        kerasrl.EnvDataset(CountingEnv(discrete=True), agent)


def test_fit_on_mismatched_env(pendulum):
    agent = make_sac(gym.make("MountainCarContinuous-v0"))
    with pytest.raises(ValueError, match="observation space"):
        agent.fit(pendulum, epochs=1, steps_per_epoch=1)


def test_vector_env_without_autoreset_rejected():
    venv = gym.vector.SyncVectorEnv([lambda: gym.make("Pendulum-v1")] * 2,
                                    autoreset_mode=gym.vector.AutoresetMode.DISABLED)
    agent = make_sac(venv, compile=False)
    with pytest.raises(ValueError, match="autoreset"):
        kerasrl.EnvDataset(venv, agent)


# -------------------------------------------------------------- NaN reward
@pytest.mark.parametrize("nan_at", [10, 50], ids=["during-warm-up", "during-training"])
def test_nan_reward_fails_fit_and_keeps_earlier_transitions(nan_at):
    env = NanRewardWrapper(gym.make("Pendulum-v1"), at=nan_at)
    agent = make_sac(env)
    data = make_data(env, agent, learning_starts=32, batch_size=8)
    with pytest.raises(ValueError, match="reward") as info:
        agent.fit(data, epochs=1, steps_per_epoch=100, verbose=0)
    assert "nan" in str(info.value).lower()
    # Everything before the bad step is stored, nothing after it.
    assert len(data.buffer) == data.env_steps == nan_at - 1
    assert env.steps == nan_at  # the collector stopped at the bad step
    assert np.all(np.isfinite(stored(data.buffer)["reward"]))
    s = stored(data.buffer)
    np.testing.assert_array_equal(s["next_observation"][:-1], s["observation"][1:])
    # Every good batch was trained on. (Without XLA, TensorFlow runs the
    # data-independent counter increments of the failed step too: +1 at most.)
    expected_updates = max(nan_at - 1 - 32, 0)
    assert expected_updates <= int(agent.num_gradient_steps.numpy()) <= expected_updates + 1


def test_nan_reward_exact_transitions():
    env = TimeLimit(CountingEnv(nan_reward_at=7), max_episode_steps=4)
    agent = make_sac(env)
    data = make_data(env, agent, learning_starts=3, batch_size=2)
    with pytest.raises(ValueError, match="non-finite reward"):
        agent.fit(data, epochs=1, steps_per_epoch=20, verbose=0)
    s = stored(data.buffer)
    np.testing.assert_array_equal(s["observation"], [[0, 0], [0, 1], [0, 2], [0, 3], [1, 0], [1, 1]])
    np.testing.assert_array_equal(s["reward"], [1, 2, 3, 4, 1, 2])
    assert env.unwrapped.total_steps == 7


def test_dataset_usable_after_a_failed_fit():
    """The next fit on the same dataset restarts the episode: no transition spans the failure."""
    env = TimeLimit(CountingEnv(nan_reward_at=7), max_episode_steps=4)
    agent = make_sac(env)
    data = make_data(env, agent, learning_starts=3, batch_size=2)
    with pytest.raises(ValueError, match="reward"):
        agent.fit(data, epochs=1, steps_per_epoch=100, verbose=0)
    steps = int(agent.num_gradient_steps.numpy())
    history = agent.fit(data, epochs=1, steps_per_epoch=5, verbose=0)
    assert int(agent.num_gradient_steps.numpy()) == steps + 5
    assert np.isfinite(history.history["loss"][0])
    s = stored(data.buffer)
    assert len(s["reward"]) >= 6 + 5
    np.testing.assert_array_equal(s["next_observation"][:, 0], s["observation"][:, 0])
    np.testing.assert_array_equal(s["next_observation"][:, 1], s["observation"][:, 1] + 1)
    np.testing.assert_array_equal(s["observation"][6], [2, 0])  # a fresh episode after the failure


def test_on_policy_fit_on_other_data_names_what_it_needs(cartpole):
    import tensorflow as tf

    agent = kerasrl.PPO.from_env(cartpole, hidden=HIDDEN, n_steps=16, batch_size=8)
    agent.compile()
    with pytest.raises(ValueError, match="RolloutDataset or an environment"):
        agent.fit(tf.data.Dataset.range(4), epochs=1, verbose=0)
