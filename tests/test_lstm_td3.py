"""LSTM-TD3: memory networks, stateful acting, and its place in the EnvDataset loop."""

from __future__ import annotations

import gymnasium as gym
import keras
import numpy as np
import pytest

import kerasrl
from kerasrl.envs import pomdp
from kerasrl.networks import NumpyMemoryNet, memory_network
from support import CountingEnv, make_data

SMALL = dict(memory_hidden=(16,), lstm_units=16, feature_hidden=(16,), hidden=(16,))
AUTORESET = gym.vector.AutoresetMode


def small_agent(env, history_length: int = 3, **kwargs) -> kerasrl.LSTMTD3:
    agent = kerasrl.LSTMTD3.from_env(env, history_length=history_length, seed=0, **{**SMALL, **kwargs})
    agent.compile(optimizer=keras.optimizers.Adam(1e-3), steps_per_execution=5)
    return agent


@pytest.mark.parametrize("use_past_actions,memory_after", [(True, ()), (False, (8,))])
@pytest.mark.parametrize("with_action", [False, True])
def test_numpy_copy_matches_the_keras_network_for_every_history_length(use_past_actions, memory_after, with_action):
    L, obs_dim, act_dim = 4, 3, 2
    net = memory_network(obs_dim, act_dim, L, 2, with_action=with_action, memory_hidden=(16,), lstm_units=8,
                         memory_after=memory_after, feature_hidden=(16,), combination_hidden=(16,),
                         use_past_actions=use_past_actions, output_activation="tanh", seed=1)
    rng = np.random.default_rng(0)
    B = 6
    inputs = {"observation": rng.normal(size=(B, obs_dim)).astype("float32"),
              "history_observation": rng.normal(size=(B, L, obs_dim)).astype("float32"),
              "history_mask": np.arange(L)[None] >= np.array([0, 1, 2, 3, 4, 4])[:, None]}  # full ... empty
    if use_past_actions:
        inputs["history_action"] = rng.uniform(-1, 1, size=(B, L, act_dim)).astype("float32")
    if with_action:
        inputs["action"] = rng.uniform(-1, 1, size=(B, act_dim)).astype("float32")
    expected = np.asarray(net(inputs))
    got = NumpyMemoryNet(net)(**inputs)
    np.testing.assert_allclose(got, expected, atol=2e-6)
    # An empty history is the zero LSTM state: the masked-out values do not matter.
    inputs["history_observation"][-1] = 123.0
    np.testing.assert_allclose(np.asarray(net(inputs))[-1], expected[-1], atol=1e-6)


@pytest.mark.parametrize("mode", [AUTORESET.SAME_STEP, AUTORESET.NEXT_STEP])
def test_acting_state_follows_each_environment_copy_and_restarts_with_its_episode(mode):
    env = gym.vector.SyncVectorEnv([lambda: CountingEnv(terminate_at=3, tag=1), lambda: CountingEnv(terminate_at=5, tag=2)],
                                   autoreset_mode=mode)
    agent = small_agent(env, history_length=3)
    data = make_data(env, agent, learning_starts=6)
    checked = 0
    for step in range(30):
        data.step(random=step < 6)  # random warm-up steps enter the history too
        state, obs = data.loop.state, data.loop.observation
        for i in range(2):
            if data.loop.skip[i]:  # NEXT_STEP: the copy resets on its next step
                continue
            t = int(obs[i, 1])
            held = state.mask[i]
            assert held.sum() == min(t, 3)
            np.testing.assert_array_equal(state.observation[i][held][:, 1], np.arange(t - held.sum(), t))
            assert np.all(state.observation[i][held][:, 0] == obs[i, 0])  # the same episode and copy
            checked += 1
    assert checked > 40
    batch, _ = data.buffer.sample(64)  # the buffer's histories agree with what acting saw
    counts = batch["history_mask"].sum(axis=1)
    np.testing.assert_array_equal(counts, np.minimum(batch["observation"][:, 1], 3))


def test_history_length_zero_acts_and_fits_without_memory():
    env = gym.make("Pendulum-v1")
    agent = small_agent(env, history_length=0)
    assert not any("lstm" in layer.name for layer in agent.actor.layers)
    action, state = agent.act(env.reset(seed=0)[0], state=agent.initial_state())
    assert env.action_space.contains(action) and state.mask.shape == (1, 0)
    data = kerasrl.EnvDataset(env, agent, batch_size=16, learning_starts=32, seed=0)
    assert data.buffer.history_length == 0
    history = agent.fit(data, epochs=1, steps_per_epoch=10, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


@pytest.mark.parametrize("buffer_class", [kerasrl.ReplayBuffer, kerasrl.PrioritizedReplayBuffer])
def test_n_step_history_replay_fits_on_a_vector_env(buffer_class):
    env = gym.make_vec("Pendulum-v1", num_envs=2)
    agent = small_agent(env)
    buffer = buffer_class(1000, n_step=3, history_length=3, seed=0)
    data = kerasrl.EnvDataset(env, agent, buffer=buffer, batch_size=16, learning_starts=32, seed=0)
    history = agent.fit(data, epochs=1, steps_per_epoch=10, verbose=0)
    assert np.isfinite(history.history["loss"][-1]) and buffer.gamma == agent.gamma
    batch, _ = buffer.sample(64)
    np.testing.assert_allclose(batch["discount"], agent.gamma ** 3, rtol=1e-6)  # no episode ended yet
    # The next window ends with the two steps after t, which the 1-step window could not hold.
    np.testing.assert_array_equal(batch["next_history_observation"][:, -3], batch["observation"])
    assert batch["next_history_mask"][:, -3:].all()


def test_a_buffer_without_the_agents_history_and_a_foreign_state_are_named():
    env = pomdp.make("Pendulum-v1", "remove_velocity")
    agent = small_agent(env, history_length=3)
    with pytest.raises(ValueError, match="history_length=3, but the replay buffer keeps histories of 0"):
        kerasrl.EnvDataset(env, agent, buffer=kerasrl.ReplayBuffer(1000))
    assert kerasrl.EnvDataset(env, agent).buffer.history_length == 3  # the default buffer follows the agent
    obs, _ = env.reset(seed=0)
    with pytest.raises(ValueError, match="needs a state from initial_state"):
        agent.act(obs, state=agent.initial_state(4))
    with pytest.raises(ValueError, match="got tuple"):
        agent.act(obs, state=(1, 2))


def test_acting_by_hand_carries_the_window():
    env = pomdp.make("Pendulum-v1", "remove_velocity")
    agent = small_agent(env, history_length=2)
    obs, _ = env.reset(seed=0)
    state = agent.initial_state()
    seen = []
    for _ in range(3):
        action, state = agent.act(obs, state=state, deterministic=True)
        seen.append((obs, agent.unscale_action(action[None]).numpy()[0]))
        obs, *_ = env.step(action)
    np.testing.assert_allclose(state.observation[0], [seen[1][0], seen[2][0]])
    np.testing.assert_allclose(state.action[0], [seen[1][1], seen[2][1]], atol=1e-6)
    assert state.mask.all()
    # The same action for the same observation and window, whatever came before the window.
    again, _ = agent.act(obs, state=state, deterministic=True)
    np.testing.assert_array_equal(again, agent.act(obs, state=state, deterministic=True)[0])


def test_acting_from_the_kept_runs_equals_acting_from_the_window():
    """The state's runs (the LSTM over every suffix of the window, moved on step by step) give the
    action the whole window gives, across episode ends, copies and changed weights."""
    env = gym.vector.SyncVectorEnv([lambda: pomdp.make("Pendulum-v1", "remove_velocity", max_episode_steps=7)] * 2)
    agent = small_agent(env, history_length=3)
    obs, _ = env.reset(seed=0)
    state, rng, restarts = agent.initial_state(2), np.random.default_rng(0), 0
    for step in range(20):
        assert step == 0 or state.runs_of(agent.policy_snapshot()["actor"]) is not None
        action, next_state = agent.act(obs, state=state, deterministic=True)
        np.testing.assert_allclose(action, agent.act(obs, state=state._replace(runs=None), deterministic=True)[0],
                                   atol=1e-6)
        if step == 9:  # new weights: the runs are stale and made again from the windows
            agent.actor.set_weights([w + rng.normal(0, 0.05, w.shape) for w in agent.actor.get_weights()])
            agent.refresh_policy()
            assert next_state.runs_of(agent.policy_snapshot()["actor"]) is None
        action = action + rng.normal(0, 0.5, action.shape).astype("float32")  # the taken action enters the window
        obs, _, terminated, truncated, _ = env.step(np.clip(action, -2, 2))
        state = agent.reset_state(agent.advance_state(next_state, obs, np.clip(action, -2, 2)), terminated | truncated)
        restarts += int((terminated | truncated).sum())
    assert restarts == 4  # each copy restarted twice, runs and all
