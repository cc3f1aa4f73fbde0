"""Atari: make_atari's preprocessing, the frame-stack buffer (each frame stored
once, stacks rebuilt exactly) and DQN's Nature CNN torso."""

from __future__ import annotations

import gymnasium as gym
import keras
import numpy as np
import pytest

import kerasrl

ENV_ID = "BreakoutNoFrameskip-v4"


def record_run(env, buffer, steps, seed=0):
    """Steps `env` (a vector env) randomly, adding to `buffer` as EnvDataset does;
    returns {transition id: (obs, next_obs, reward, terminated)}."""
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    recorded = {}
    for _ in range(steps):
        actions = env.action_space.sample()
        next_obs, rewards, terminated, truncated, info = env.step(actions)
        stored_next = np.array(next_obs, copy=True)
        if "_final_obs" in info:
            for i in np.flatnonzero(info["_final_obs"]):
                stored_next[i] = info["final_obs"][i]
        for i in range(env.num_envs):
            recorded[buffer.num_added + i] = (obs[i].copy(), stored_next[i].copy(), float(rewards[i]),
                                              float(terminated[i]))
        buffer.add(obs, actions, rewards.astype(np.float32), stored_next, terminated, truncated=truncated,
                   env_ids=np.arange(env.num_envs))
        obs = next_obs
    return recorded


@pytest.fixture(scope="module")
def atari_vector():
    env = kerasrl.envs.make_atari(ENV_ID, n_envs=2)
    yield env
    env.close()


def test_make_atari_preprocessing():
    env = kerasrl.envs.make_atari(ENV_ID)
    assert env.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    obs, _ = env.reset(seed=0)
    assert all(np.array_equal(obs[i], obs[-1]) for i in range(4))  # reset padding
    rewards, terminated = [], False
    while not terminated:  # training mode: a lost life ends the episode
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        rewards.append(reward)
        assert not truncated
    assert set(rewards) <= {-1.0, 0.0, 1.0} and info["lives"] == 4
    evaluation = kerasrl.envs.make_atari(ENV_ID, training=False)
    evaluation.reset(seed=0)
    _, _, terminated, _, info = evaluation.step(0)
    assert not terminated and info["lives"] == 5
    with pytest.raises(ValueError, match="NoFrameskip"):
        kerasrl.envs.make_atari("ALE/Breakout-v5")


def test_frame_stack_buffer_rebuilds_every_stack_exactly(atari_vector):
    buffer = kerasrl.FrameStackReplayBuffer(1000, seed=0)
    recorded = record_run(atari_vector, buffer, steps=300)
    assert len(buffer) == 600
    ids = buffer.storage["id"]
    ended = [i for i, (_, _, _, term) in recorded.items() if term]
    assert ended, "the random run should lose lives"
    for _ in range(5):
        batch, slots = buffer.sample(128)
        for row, slot in enumerate(slots):
            obs, next_obs, reward, terminated = recorded[int(ids[slot])]
            np.testing.assert_array_equal(batch["observation"][row], obs)
            np.testing.assert_array_equal(batch["next_observation"][row], next_obs)
            assert batch["reward"][row] == reward and batch["terminated"][row] == terminated
    # One frame per transition, not two stacks of four.
    assert buffer.nbytes < 600 * 84 * 84 + 1000 * 84 * 84 * 1.01
    assert buffer.storage["frame"].shape == (1000, 84, 84)


def test_frame_stack_buffer_wraps_and_round_trips(atari_vector, tmp_path):
    buffer = kerasrl.FrameStackReplayBuffer(150, seed=0)
    recorded = record_run(atari_vector, buffer, steps=200)  # 400 transitions through 150 slots
    assert len(buffer) == 150 and buffer.num_added == 400
    assert all(i >= 400 - 150 for i in buffer.final_frames)  # nothing kept for overwritten transitions
    buffer.save(tmp_path / "frames.npz")
    again = kerasrl.FrameStackReplayBuffer(150, seed=0).load(tmp_path / "frames.npz")
    a, slots_a = buffer.sample(64)
    b, slots_b = again.sample(64)
    np.testing.assert_array_equal(slots_a, slots_b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    oldest = 400 - 150 + 2 * 3  # the oldest few (2 envs interleave) may have lost earlier frames to the wrap
    for row, slot in enumerate(slots_a):
        transition = int(buffer.storage["id"][slot])
        if transition >= oldest:
            np.testing.assert_array_equal(a["observation"][row], recorded[transition][0])
            np.testing.assert_array_equal(a["next_observation"][row], recorded[transition][1])
    with pytest.raises(ValueError, match="FrameStackReplayBuffer"):
        kerasrl.ReplayBuffer(150).save(tmp_path / "plain.npz") or again.load(tmp_path / "plain.npz")
    with pytest.raises(ValueError, match="n_step"):
        kerasrl.FrameStackReplayBuffer(10, n_step=3)


def test_dqn_nature_cnn_fits_saves_and_acts(tmp_path):
    env = kerasrl.envs.make_atari(ENV_ID)
    agent = kerasrl.DQN.from_env(env, torso="nature_cnn", dueling=True, seed=0)
    layers = [type(layer).__name__ for layer in agent.q_network.layers]
    assert layers[:3] == ["Permute", "Rescaling", "Conv2D"] and layers[-1] == "DuelingHead"
    kernel = agent.q_network.layers[2].kernel.numpy().reshape(-1, 32)
    np.testing.assert_allclose(kernel.T @ kernel, 2.0 * np.eye(32), atol=1e-4)  # orthogonal, gain sqrt(2)
    agent.compile(optimizer=keras.optimizers.Adam(1e-4))
    data = kerasrl.EnvDataset(env, agent, buffer=kerasrl.FrameStackReplayBuffer(2000), batch_size=8,
                              learning_starts=100, train_freq=4, seed=0)
    assert data._fields()[0][1] == "uint8"  # frames travel as uint8; the model scales them
    history = agent.fit(data, epochs=1, steps_per_epoch=10, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    agent.save(tmp_path / "atari.keras")
    again = keras.saving.load_model(tmp_path / "atari.keras")
    obs, _ = env.reset(seed=1)
    assert again.act(obs, deterministic=True) == agent.act(obs, deterministic=True)
    with pytest.raises(ValueError, match="nature_cnn"):
        kerasrl.DQN.from_env(gym.make("CartPole-v1"), torso="nature_cnn")
