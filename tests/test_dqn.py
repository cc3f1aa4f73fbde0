"""DQN specifics: targets (double and plain), dueling head, losses, IS weights,
epsilon-greedy acting and the exploration schedule."""

from __future__ import annotations

import gymnasium as gym
import keras
import numpy as np
import pytest

import kerasrl
from kerasrl import schedules
from kerasrl.networks import DuelingHead, NumpyMLP
from support import HIDDEN, make_sac


def random_batch(n=16, seed=0, obs_dim=4, n_actions=2, **extra):
    rng = np.random.default_rng(seed)
    batch = {
        "observation": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "action": rng.integers(0, n_actions, n),
        "reward": rng.normal(size=n).astype(np.float32),
        "next_observation": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "terminated": (rng.random(n) < 0.3).astype(np.float32),
    }
    batch.update(extra)
    return batch


def frozen_dqn(env, **kwargs):
    """A DQN whose optimizer does not move the weights, so train_on_batch reports the loss of known weights."""
    agent = kerasrl.DQN.from_env(env, hidden=HIDDEN, seed=0, **kwargs)
    agent.compile(optimizer=keras.optimizers.SGD(0.0))
    # Make the target network differ from the online one.
    for w in agent.q_target.weights:
        w.assign(w.numpy() + np.random.default_rng(1).normal(0, 0.3, w.shape).astype(np.float32))
    return agent


def huber(x):
    return np.where(np.abs(x) <= 1, 0.5 * x ** 2, np.abs(x) - 0.5)


@pytest.mark.parametrize("double", [True, False])
def test_targets_double_versus_plain(double):
    agent = frozen_dqn(gym.make("LunarLander-v3"), double=double)
    batch = random_batch(n=64, obs_dim=8, n_actions=4)
    n = len(batch["reward"])
    q_online_next = agent.q_network(batch["next_observation"]).numpy()
    q_target_next = agent.q_target(batch["next_observation"]).numpy()
    if double:
        q_next = q_target_next[np.arange(n), q_online_next.argmax(-1)]
    else:
        q_next = q_target_next.max(-1)
    y = batch["reward"] + agent.gamma * (1 - batch["terminated"]) * q_next
    q = agent.q_network(batch["observation"]).numpy()[np.arange(n), batch["action"]]
    logs = agent.train_on_batch(batch, return_dict=True)
    assert logs["loss"] == pytest.approx(np.mean(huber(q - y)), rel=1e-4)
    assert logs["td_error_mean"] == pytest.approx(np.mean(np.abs(q - y)), rel=1e-4)
    assert logs["q_mean"] == pytest.approx(q.mean(), rel=1e-4, abs=1e-6)
    # The two target rules really differ on this batch.
    assert not np.allclose(q_target_next[np.arange(n), q_online_next.argmax(-1)], q_target_next.max(-1))


def test_mse_loss_and_importance_weights(cartpole):
    agent = frozen_dqn(cartpole, loss="mse", double=False)
    weight = np.linspace(0.1, 1.0, 16).astype(np.float32)
    batch = random_batch(weight=weight)
    q = agent.q_network(batch["observation"]).numpy()[np.arange(16), batch["action"]]
    y = batch["reward"] + agent.gamma * (1 - batch["terminated"]) * agent.q_target(
        batch["next_observation"]).numpy().max(-1)
    logs = agent.train_on_batch(batch, return_dict=True)
    assert logs["loss"] == pytest.approx(np.mean(weight * 0.5 * (q - y) ** 2), rel=1e-4)


def test_gradient_norm_is_clipped(cartpole):
    agent = kerasrl.DQN.from_env(cartpole, hidden=HIDDEN, seed=0, max_grad_norm=1e-3, loss="mse")
    agent.compile(optimizer=keras.optimizers.SGD(1.0))
    before = [w.numpy().copy() for w in agent.q_network.trainable_weights]
    agent.train_on_batch(random_batch(reward=np.full(16, 100.0, np.float32)))
    step = np.sqrt(sum(np.sum((w.numpy() - b) ** 2) for w, b in zip(agent.q_network.trainable_weights, before)))
    assert step == pytest.approx(1e-3, rel=1e-3)  # SGD(1.0) moves by the clipped gradient


def test_dueling_head_aggregates_value_and_advantage():
    head = DuelingHead(3)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    q = head(x).numpy()
    z = x @ head.kernel.numpy() + head.bias.numpy()
    value, advantage = z[:, :1], z[:, 1:]
    np.testing.assert_allclose(q, value + advantage - advantage.mean(-1, keepdims=True), rtol=1e-5, atol=1e-6)
    # Advantages are identifiable: the mean over actions of Q is V.
    np.testing.assert_allclose(q.mean(-1), value[:, 0], rtol=1e-5, atol=1e-6)


def test_dueling_network_acts_through_numpy(cartpole):
    agent = kerasrl.DQN.from_env(cartpole, hidden=HIDDEN, seed=0, dueling=True)
    assert NumpyMLP.supports(agent.q_network)
    obs = np.random.default_rng(0).normal(size=(9, 4)).astype(np.float32)
    np.testing.assert_allclose(agent.policy_snapshot()["q"](obs), agent.q_network(obs).numpy(), rtol=1e-5, atol=1e-6)


def test_epsilon_greedy_acting(cartpole):
    agent = kerasrl.DQN.from_env(cartpole, hidden=HIDDEN, seed=0)
    obs = np.random.default_rng(0).normal(size=(2000, 4)).astype(np.float32)
    greedy = agent.act(obs, deterministic=True)
    np.testing.assert_array_equal(agent.act(obs, epsilon=0.0), greedy)
    np.testing.assert_array_equal(agent.act(obs, deterministic=True, epsilon=1.0), greedy)
    random = agent.act(obs, epsilon=1.0, rng=np.random.default_rng(0))
    assert abs(np.mean(random) - 0.5) < 0.05  # uniform over the two actions
    mixed = agent.act(obs, epsilon=0.3, rng=np.random.default_rng(0))
    assert np.mean(mixed != greedy) == pytest.approx(0.15, abs=0.03)  # half the random picks differ


def test_exploration_schedule_drives_collection_and_logs(cartpole):
    agent = kerasrl.DQN.from_env(cartpole, hidden=HIDDEN, seed=0)
    agent.compile(optimizer="adam")
    exploration = schedules.Linear(1.0, 0.1, 100)
    data = kerasrl.EnvDataset(cartpole, agent, buffer=kerasrl.ReplayBuffer(500), batch_size=8,
                              learning_starts=20, exploration=exploration, seed=0)
    history = agent.fit(data, epochs=2, steps_per_epoch=40, verbose=0)
    rates = history.history["exploration_rate"]
    assert rates[0] == pytest.approx(exploration(60)) and rates[1] == pytest.approx(0.1)
    # Without exploration=, DQN collects with its default schedule.
    default = kerasrl.EnvDataset(cartpole, agent, batch_size=8)
    assert default.exploration.get_config() == agent.default_exploration().get_config()


def test_bad_dqn_settings(pendulum, cartpole):
    with pytest.raises(ValueError, match="Discrete action space"):
        kerasrl.DQN.from_env(pendulum)
    with pytest.raises(ValueError, match="loss"):
        kerasrl.DQN.from_env(cartpole, loss="hinge")
    with pytest.raises(ValueError, match="exploration"):
        kerasrl.EnvDataset(pendulum, make_sac(pendulum), exploration=schedules.Linear(1.0, 0.1, 10))
