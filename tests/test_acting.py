"""kerasrl.acting: the environment loop, exploration wrappers, and stateful policies in the loop."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import kerasrl
from kerasrl import acting, noise, schedules
from support import HIDDEN, CountingEnv, make_sac

AUTORESET = gym.vector.AutoresetMode


class ConstantPolicy(acting.Policy):
    """Always the same action; its state counts the steps of each copy's episode."""

    def __init__(self, action):
        self.action = np.asarray(action)

    def initial_state(self, num_envs):
        return np.zeros(num_envs, np.int64)

    def reset_state(self, state, starts):
        return np.where(starts, 0, state)

    def select(self, observation, state):
        return np.repeat(self.action[None], len(observation), axis=0)

    def advance(self, state, observation, action):
        return state + 1


def counting_vector_env(mode, lengths=(3, 5), discrete=False):
    return gym.vector.SyncVectorEnv(
        [lambda n=n, i=i: CountingEnv(terminate_at=n, tag=i, discrete=discrete) for i, n in enumerate(lengths)],
        autoreset_mode=mode)


@pytest.mark.parametrize("mode", [AUTORESET.SAME_STEP, AUTORESET.NEXT_STEP], ids=lambda m: m.name)
def test_loop_hands_back_true_transitions_episodes_and_restarts_each_copys_state(mode):
    loop = acting.EnvironmentLoop(counting_vector_env(mode), ConstantPolicy([0.0]))
    loop.reset(seed=0)
    ended = []
    for _ in range(40):
        state_before = loop.state.copy()
        step = loop.step()
        for i in np.flatnonzero(step.valid):
            # observation [100*copy + episode, t] -> next [same episode, t+1], also at the episode's end
            assert step.next_observation[i, 0] == step.observation[i, 0]
            assert step.next_observation[i, 1] == step.observation[i, 1] + 1 == step.reward[i]
            assert state_before[i] == step.observation[i, 1]  # the state counted this episode's steps only
        ended += list(zip(step.episode_returns, step.episode_lengths))
        if mode == AUTORESET.NEXT_STEP:
            assert not step.valid[step.observation[:, 1] == np.array([3, 5])].any()
    # Copy 0's episodes: 3 steps, return 1+2+3; copy 1's: 5 steps, return 15.
    assert sorted(set(ended)) == [(6.0, 3), (15.0, 5)]
    assert len(ended) >= 10


def test_run_episodes_counts_whole_episodes_and_a_single_env_is_not_reset_past_the_last():
    env = CountingEnv(terminate_at=4)
    frames = []
    view = acting.vector_view(env, max_episodes=3, render=lambda e: frames.append(e.t))
    returns, lengths = acting.EnvironmentLoop(view, ConstantPolicy([0.5])).run_episodes(3, seed=0)
    np.testing.assert_array_equal(returns, [10.0, 10.0, 10.0])
    np.testing.assert_array_equal(lengths, [4, 4, 4])
    assert env.episode == 2  # three episodes, no fourth reset
    assert frames == [0, 1, 2, 3, 4] * 3  # one render per reset and per step


def test_non_finite_reward_is_an_error_and_the_loop_restarts():
    loop = acting.EnvironmentLoop(CountingEnv(nan_reward_at=3), ConstantPolicy([0.0]))
    loop.step()
    loop.step()
    with pytest.raises(ValueError, match="non-finite reward"):
        loop.step()
    step = loop.step()  # a new episode
    assert step.observation[0, 1] == 0 and loop.state[0] == 1


def test_epsilon_greedy_wraps_any_discrete_policy_and_reads_its_schedule_at_the_env_steps():
    env_steps = [0]
    policy = acting.EpsilonGreedy(ConstantPolicy(2), schedules.Linear(1.0, 0.0, 100), gym.spaces.Discrete(3),
                                  np.random.default_rng(0), lambda: env_steps[0])
    obs = np.zeros((2000, 2), np.float32)
    explored = policy.select(obs, None)
    assert set(np.unique(explored)) == {0, 1, 2}
    assert abs(np.mean(explored == 2) - (1 / 3)) < 0.05
    env_steps[0] = 50  # epsilon 0.5: the policy's action or a uniform one
    assert abs(np.mean(policy.select(obs, None) == 2) - (0.5 + 0.5 / 3)) < 0.05
    env_steps[0] = 100
    np.testing.assert_array_equal(policy.select(obs, None), 2)
    with pytest.raises(ValueError, match="Epsilon-greedy exploration needs Discrete actions"):
        acting.EpsilonGreedy(ConstantPolicy([0.0]), 0.1, gym.spaces.Box(-1, 1, (1,)))


def test_action_noise_is_in_unit_space_clipped_to_the_bounds_and_restarted_per_copy():
    space = gym.spaces.Box(np.float32(-3.0), np.float32(1.0), shape=(1,), dtype=np.float32)
    policy = acting.NoisyActions(ConstantPolicy([0.0]), noise.Gaussian(0.5), space, np.random.default_rng(0))
    actions = policy.select(np.zeros((5000, 2), np.float32), None)
    assert actions.dtype == np.float32 and actions.min() >= -3.0 and actions.max() <= 1.0
    # The action 0.0 is 0.5 in the Box's unit space; the noise (sigma 0.5 there) passes 1.0 (z > 1) ~16% of the time.
    unit_noise = (actions + 3.0) / 2.0 - 1.0 - 0.5
    assert abs(np.median(unit_noise)) < 0.03 and abs(np.mean(actions == 1.0) - 0.159) < 0.02
    # Ornstein-Uhlenbeck: one process per copy, restarted with that copy's episode only.
    ou = acting.NoisyActions(ConstantPolicy([0.0]), noise.OrnsteinUhlenbeck(sigma=0.3), space,
                             np.random.default_rng(0))
    ou.initial_state(2)
    for _ in range(20):
        ou.select(np.zeros((2, 2), np.float32), None)
    before = ou.noise.state.copy()
    ou.reset_state(None, np.array([True, False]))
    assert np.all(ou.noise.state[0] == 0) and np.array_equal(ou.noise.state[1], before[1])
    with pytest.raises(ValueError, match="Action noise needs Box actions"):
        acting.NoisyActions(ConstantPolicy(0), noise.Gaussian(0.1), gym.spaces.Discrete(2))


def test_noise_composes_with_a_stochastic_policy_and_the_collector_acts_through_the_wrappers():
    env = gym.make("Pendulum-v1")
    agent = make_sac(env)
    data = kerasrl.EnvDataset(env, agent, learning_starts=0, batch_size=8, action_noise=noise.Gaussian(0.3), seed=0)
    assert isinstance(data.loop.policy, acting.NoisyActions)
    assert not data.loop.policy.policy.deterministic  # SAC still samples; the noise comes on top
    for _ in range(50):
        data.step()
    assert data.buffer.size == 50
    dqn = kerasrl.DQN.from_env(gym.make("CartPole-v1"), hidden=HIDDEN)
    dqn_data = kerasrl.EnvDataset("CartPole-v1", dqn, learning_starts=0, seed=0)
    assert isinstance(dqn_data.loop.policy, acting.EpsilonGreedy) and dqn_data.loop.policy.policy.deterministic


def test_evaluate_env_runs_on_one_env_and_refuses_a_vector_env():
    env = gym.make("Pendulum-v1")
    agent = make_sac(env, compile=False)
    returns = agent.evaluate_env(env, episodes=2, seed=0)
    assert returns.shape == (2,) and np.all(returns < 0)
    np.testing.assert_array_equal(agent.evaluate_env(gym.make("Pendulum-v1"), episodes=2, seed=0), returns)
    with pytest.raises(ValueError, match="not a vector env"):
        agent.evaluate_env(gym.make_vec("Pendulum-v1", num_envs=2), episodes=1)
