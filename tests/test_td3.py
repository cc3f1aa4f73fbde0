"""TD3 and DDPG specifics: target smoothing, clipped double-Q targets, the
policy delay (of the actor and the targets), action noise in collection."""

from __future__ import annotations

import gymnasium as gym
import keras
import numpy as np
import pytest

import kerasrl
from kerasrl import callbacks as rlcb, noise
from support import HIDDEN, numpy_weights, weights_equal


def random_batch(n=32, seed=0, obs_dim=3, act_dim=1, high=2.0):
    rng = np.random.default_rng(seed)
    return {
        "observation": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "action": rng.uniform(-high, high, (n, act_dim)).astype(np.float32),
        "reward": rng.normal(size=n).astype(np.float32),
        "next_observation": rng.normal(size=(n, obs_dim)).astype(np.float32),
        "terminated": (rng.random(n) < 0.3).astype(np.float32),
    }


def perturb(model, seed, scale=0.3):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(w.numpy() + rng.normal(0, scale, w.shape).astype(np.float32))


def q(critic, obs, unit_action):
    return critic(np.concatenate([obs, unit_action], -1)).numpy()[:, 0]


def test_target_smoothing_noise_is_clipped(pendulum):
    agent = kerasrl.TD3.from_env(pendulum, hidden=HIDDEN, seed=0, target_noise=5.0, target_noise_clip=0.3)
    s_next = np.random.default_rng(0).normal(size=(2000, 3)).astype(np.float32)
    mu = agent.actor_target(s_next).numpy()
    a_next = agent.target_action(s_next).numpy()
    assert np.all(np.abs(a_next) <= 1.0)
    shift = a_next - mu
    inside = np.abs(mu + np.sign(shift) * 0.3) < 1.0  # where the action bound does not cut the noise
    assert np.all(np.abs(shift) <= 0.3 + 1e-6)
    # With sigma >> clip, ~95% of the draws are clipped to exactly +-0.3.
    assert np.mean(np.isclose(np.abs(shift[inside]), 0.3, atol=1e-6)) > 0.9
    assert 0.3 < np.mean(shift[inside] > 0) < 0.7


def test_td_target_is_min_of_twin_targets(pendulum):
    agent = kerasrl.TD3.from_env(pendulum, hidden=HIDDEN, seed=0, gamma=0.9, target_noise=0.0)
    perturb(agent.critic_targets[0], 1)
    perturb(agent.critic_targets[1], 2)
    batch = random_batch()
    a_next = agent.actor_target(batch["next_observation"]).numpy()
    q1 = q(agent.critic_targets[0], batch["next_observation"], a_next)
    q2 = q(agent.critic_targets[1], batch["next_observation"], a_next)
    expected = batch["reward"] + 0.9 * (1 - batch["terminated"]) * np.minimum(q1, q2)
    np.testing.assert_allclose(agent.td_target(batch).numpy(), expected, rtol=1e-5, atol=1e-5)
    assert np.any(q1 < q2) and np.any(q2 < q1)  # the min really picks from both


def test_critic_loss_with_weights_and_n_step_discount(pendulum):
    agent = kerasrl.TD3.from_env(pendulum, hidden=HIDDEN, seed=0, target_noise=0.0)
    agent.compile(optimizer=keras.optimizers.SGD(0.0))
    batch = random_batch()
    rng = np.random.default_rng(5)
    batch["weight"] = rng.uniform(0.2, 1.0, 32).astype(np.float32)
    batch["discount"] = rng.choice([0.99, 0.99 ** 3], 32).astype(np.float32)
    a_next = agent.actor_target(batch["next_observation"]).numpy()
    q_next = np.minimum(q(agent.critic_targets[0], batch["next_observation"], a_next),
                        q(agent.critic_targets[1], batch["next_observation"], a_next))
    y = batch["reward"] + batch["discount"] * (1 - batch["terminated"]) * q_next
    unit_a = batch["action"] / 2.0
    q1, q2 = (q(c, batch["observation"], unit_a) for c in agent.critics)
    expected = np.mean(batch["weight"] * (q1 - y) ** 2) + np.mean(batch["weight"] * (q2 - y) ** 2)
    logs = agent.train_on_batch(batch, return_dict=True)
    assert logs["critic_loss"] == pytest.approx(expected, rel=1e-4)
    assert logs["q_diff"] == pytest.approx(np.mean(np.abs(q1 - q2)), rel=1e-4)


@pytest.mark.parametrize("every", [1, 2])
def test_policy_delay_gates_actor_and_targets(pendulum, every):
    agent = kerasrl.TD3.from_env(pendulum, hidden=HIDDEN, seed=0, policy_delay=3)
    agent.compile(optimizer=keras.optimizers.SGD(0.05))
    agent.set_target_update(tau=0.5, every=every)
    batch = random_batch()
    actor_moves, target_moves, critic_moves = [], [], []
    for _ in range(12):
        before = [numpy_weights(m) for m in (agent.actor, agent.actor_target, agent.critics[0])]
        agent.train_on_batch(batch)
        after = [numpy_weights(m) for m in (agent.actor, agent.actor_target, agent.critics[0])]
        actor_moves.append(not weights_equal(before[0], after[0]))
        target_moves.append(not weights_equal(before[1], after[1]))
        critic_moves.append(not weights_equal(before[2], after[2]))
    step = np.arange(1, 13)
    assert all(critic_moves)
    np.testing.assert_array_equal(actor_moves, step % 3 == 0)
    np.testing.assert_array_equal(target_moves, step % (3 * every) == 0)


def test_ddpg_updates_actor_every_step_with_one_critic(pendulum):
    agent = kerasrl.DDPG.from_env(pendulum, hidden=HIDDEN, seed=0)
    assert len(agent.critics) == 1 and agent.policy_delay == 1 and agent.target_noise == 0.0
    agent.compile(actor_optimizer=keras.optimizers.Adam(1e-3), critic_optimizer=keras.optimizers.Adam(2e-3))
    assert float(agent.critic_optimizer.learning_rate) == pytest.approx(2e-3)
    batch = random_batch()
    for _ in range(2):
        before = numpy_weights(agent.actor)
        logs = agent.train_on_batch(batch, return_dict=True)
        assert not weights_equal(before, numpy_weights(agent.actor))
    assert "q_diff" not in logs and np.isfinite(logs["actor_loss"])
    config = agent.get_config()
    assert "policy_delay" not in config and type(agent).from_config(config).n_critics == 1


def test_deterministic_acting_ignores_noise(pendulum):
    agent = kerasrl.TD3.from_env(pendulum, hidden=HIDDEN, seed=0)
    obs = np.stack([pendulum.observation_space.sample() for _ in range(5)])
    big = np.full((5, 1), 0.5, np.float32)
    clean = agent.act(obs, deterministic=True)
    np.testing.assert_array_equal(agent.act(obs, deterministic=True, noise=big), clean)
    np.testing.assert_array_equal(agent.act(obs), clean)  # a deterministic policy without noise
    noisy = agent.act(obs, noise=big)
    np.testing.assert_allclose(noisy, np.clip(clean / 2.0 + 0.5, -1, 1) * 2.0, rtol=1e-5)


def test_bad_settings(pendulum, cartpole):
    with pytest.raises(ValueError, match="Box action space"):
        kerasrl.TD3.from_env(cartpole)
    with pytest.raises(ValueError, match="Box action space"):
        kerasrl.DDPG.from_env(cartpole)
    with pytest.raises(ValueError, match="policy_delay"):
        kerasrl.TD3.from_env(pendulum, policy_delay=0)
    with pytest.raises(ValueError, match="target_noise"):
        kerasrl.TD3.from_env(pendulum, target_noise=-0.1)
    td3 = kerasrl.TD3.from_env(pendulum, hidden=HIDDEN)
    with pytest.raises(ValueError, match="Epsilon-greedy exploration needs Discrete actions"):
        kerasrl.EnvDataset(pendulum, td3, exploration=0.1)
    dqn = kerasrl.DQN.from_env(cartpole, hidden=HIDDEN)
    with pytest.raises(ValueError, match="Action noise needs Box actions"):
        kerasrl.EnvDataset(cartpole, dqn, action_noise=noise.Gaussian(0.1))


# ------------------------------------------------------------------ noise
def test_ou_stationary_statistics_and_correlation():
    theta, dt, sigma = 1.0, 0.05, 0.4
    ou = noise.OrnsteinUhlenbeck(sigma=sigma, theta=theta, dt=dt)
    rng = np.random.default_rng(0)
    path = np.stack([ou.sample(rng, 4000, 1)[:, 0] for _ in range(300)])[150:]  # after 7 time constants
    decay = 1 - theta * dt
    stationary_std = sigma * np.sqrt(dt / (1 - decay ** 2))
    assert abs(path.mean()) < 0.01
    assert path.std() == pytest.approx(stationary_std, rel=0.03)
    lag = 5
    corr = np.mean(path[lag:] * path[:-lag]) / path.var()
    assert corr == pytest.approx(decay ** lag, abs=0.02)


def test_ou_reset_restarts_chosen_processes():
    ou = noise.OrnsteinUhlenbeck(sigma=0.5, theta=0.15, dt=0.1, x0=0.25)
    rng = np.random.default_rng(0)
    for _ in range(10):
        ou.sample(rng, 3, 2)
    ou.reset([0, 2])
    np.testing.assert_array_equal(ou.state[[0, 2]], 0.25)
    assert np.all(ou.state[1] != 0.25)
    ou.reset()
    np.testing.assert_array_equal(ou.state, 0.25)


def test_gaussian_sigma_schedule_and_config_round_trip():
    g = noise.Gaussian(kerasrl.schedules.Linear(1.0, 0.0, 100))
    rng = np.random.default_rng(0)
    assert g.sample(rng, 1000, 1, env_steps=0).std() == pytest.approx(1.0, rel=0.1)
    np.testing.assert_array_equal(g.sample(rng, 10, 1, env_steps=100), 0.0)
    for original in (g, noise.OrnsteinUhlenbeck(sigma=0.3, theta=0.2, dt=0.05, mu=0.1)):
        again = noise.get(noise.serialize(original))
        assert type(again) is type(original) and again.get_config() == original.get_config()


def test_collection_noise_per_env_copy_reset_at_episode_end():
    env = gym.make_vec("Pendulum-v1", num_envs=2, vectorization_mode="sync",
                       vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    agent = kerasrl.DDPG.from_env(env, hidden=HIDDEN, seed=0)
    ou = noise.OrnsteinUhlenbeck(sigma=0.3)
    data = kerasrl.EnvDataset(env, agent, learning_starts=0, action_noise=ou, seed=0)
    assert data.get_config()["action_noise"]["class_name"] == "OrnsteinUhlenbeck"
    for _ in range(199):
        data.step()
    assert ou.state.shape == (2, 1) and np.all(ou.state != 0) and ou.state[0, 0] != ou.state[1, 0]
    stored = data.buffer.sample(len(data.buffer))[0]["action"]
    assert np.abs(stored).max() <= 2.0
    data.step()  # Pendulum's 200-step limit: both episodes end, both processes restart
    assert data.episodes == 2
    np.testing.assert_array_equal(ou.state, 0.0)


def test_td3_default_noise_and_fit_logs(pendulum):
    agent = kerasrl.TD3.from_env(pendulum, hidden=HIDDEN, seed=0)
    agent.compile(optimizer=keras.optimizers.Adam(1e-3), steps_per_execution=4)
    data = kerasrl.EnvDataset(pendulum, agent, buffer=kerasrl.ReplayBuffer(1000), batch_size=32,
                              learning_starts=64, seed=0)
    assert isinstance(data.action_noise, noise.Gaussian) and data.action_noise.sigma(0) == 0.1
    history = agent.fit(data, epochs=1, steps_per_epoch=20, verbose=0, callbacks=[rlcb.SoftTargetUpdate(0.01)])
    for key in ("critic_loss", "actor_loss", "q_mean", "q_diff", "episode_return"):
        assert key in history.history
    assert int(agent.num_gradient_steps.numpy()) == 20
