"""The README's user story, end to end, with small networks and budgets."""

import math

import gymnasium as gym
import keras
import numpy as np
import pytest

import kerasrl
from kerasrl import callbacks as rlcb


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "LunarLander-v3"])
def test_user_story(env_id, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = gym.make(env_id)
    agent = kerasrl.SAC.from_env(env, hidden=(32, 32))
    agent.compile(optimizer=keras.optimizers.Adam(1e-3))
    data = kerasrl.EnvDataset(env, agent, buffer=kerasrl.ReplayBuffer(100_000), batch_size=32,
                              learning_starts=100, seed=0)
    history = agent.fit(data, epochs=2, steps_per_epoch=50, verbose=0,
                        callbacks=[rlcb.SoftTargetUpdate(tau=0.005), keras.callbacks.CSVLogger("log.csv")])
    # Pendulum's first episode ends at env step 200 = 100 warm-up + 100 updates.
    assert math.isfinite(history.history["episode_return"][-1])
    with open("log.csv") as f:
        header = f.readline().strip().split(",")
    assert "episode_return" in header and "critic_loss" in header
    returns = agent.evaluate_env(gym.make(env_id), episodes=2, seed=1)
    assert returns.shape == (2,) and np.all(np.isfinite(returns))
    agent.save("sac.keras")
    again = keras.saving.load_model("sac.keras")
    obs, _ = env.reset(seed=3)
    assert (again.act(obs, deterministic=True) == agent.act(obs, deterministic=True)).all()


def test_lstm_td3_user_story(tmp_path, monkeypatch):
    """Issue 18's story as written (the paper's default networks), with a small budget."""
    from kerasrl.envs import pomdp

    monkeypatch.chdir(tmp_path)
    env = pomdp.make("Pendulum-v1", "remove_velocity")
    agent = kerasrl.LSTMTD3.from_env(env, history_length=5)
    agent.compile(optimizer=keras.optimizers.Adam(1e-3))
    data = kerasrl.EnvDataset(env, agent, buffer=kerasrl.ReplayBuffer(100_000, history_length=5),
                              batch_size=100, learning_starts=200, seed=0)
    agent.fit(data, epochs=2, steps_per_epoch=50, verbose=0,
              callbacks=[kerasrl.callbacks.Checkpoint("runs/lstm-td3", every_steps=100)])
    returns = agent.evaluate_env(pomdp.make("Pendulum-v1", "remove_velocity"), episodes=2, seed=1)
    assert returns.shape == (2,) and np.all(np.isfinite(returns))
    agent.save("lstm_td3.keras")
    again = keras.saving.load_model("lstm_td3.keras")

    obs, _ = env.reset(seed=3)  # stepping an episode by hand
    state = again.initial_state()
    mine = agent.initial_state()
    for _ in range(8):
        action, state = again.act(obs, state=state, deterministic=True)
        expected, mine = agent.act(obs, state=mine, deterministic=True)
        np.testing.assert_array_equal(action, expected)
        obs, *_ = env.step(action)
    assert state.mask.all()  # the window is full after 5 steps

    resumed, resumed_data = kerasrl.resume("runs/lstm-td3", pomdp.make("Pendulum-v1", "remove_velocity"))
    assert isinstance(resumed, kerasrl.LSTMTD3) and resumed_data.buffer.history_length == 5
    assert len(resumed_data.buffer) >= 300
    resumed.fit(resumed_data, epochs=resumed_data.initial_epoch + 1, initial_epoch=resumed_data.initial_epoch,
                steps_per_epoch=50, verbose=0)
