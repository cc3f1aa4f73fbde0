"""Every agent's losses and acting, pinned on hand-computed batches.

Losses are recomputed in numpy from the networks' outputs, with optimizers of
learning rate 0 so an update reports the losses of known weights; deterministic
actions are tied to the network output they must come from; the direction of
each policy objective is checked by real gradient steps. The one-line slips
these tests must catch are listed in benchmarks/mutations.py.
"""

from __future__ import annotations

import math

import gymnasium as gym
import keras
import numpy as np
import pytest

import kerasrl
from kerasrl import callbacks as rlcb, schedules
from kerasrl.agents.base import gaussian_log_prob_tanh
from support import HIDDEN, batch_dict, log_softmax, make_sac, np_forward, perturb_targets

FROZEN = keras.optimizers.SGD(0.0)


def random_obs(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def perturb(model: keras.Model, seed: int, scale: float = 0.3) -> None:
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(w.numpy() + rng.normal(0, scale, w.shape).astype(np.float32))


def box_batch(n: int = 32, obs_dim: int = 3, high: float = 2.0, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    batch = batch_dict(random_obs(n, obs_dim, seed), rng.uniform(-high, high, (n, 1)).astype(np.float32),
                       rng.normal(size=n), random_obs(n, obs_dim, seed + 1), rng.random(n) < 0.3)
    batch["weight"] = keras.ops.convert_to_tensor(rng.uniform(0.2, 1.0, n).astype(np.float32))
    return batch


def q_of(critic: keras.Model, obs: np.ndarray, unit_action: np.ndarray) -> np.ndarray:
    return np_forward(critic, np.concatenate([obs, unit_action], -1))[:, 0]


# ------------------------------------------------------------------ acting
@pytest.mark.parametrize("dueling", [False, True])
def test_dqn_deterministic_action_is_the_argmax_of_q(dueling):
    env = gym.make("LunarLander-v3")
    agent = kerasrl.DQN.from_env(env, hidden=HIDDEN, dueling=dueling, seed=0)
    perturb(agent.q_network, 1)  # spread the Q-values so ties cannot hide a wrong choice
    agent.epsilon = 1.0  # deterministic acting must not explore, whatever epsilon is
    obs = random_obs(256, 8)
    q = np_forward(agent.q_network, obs)
    np.testing.assert_array_equal(agent.act(obs, deterministic=True), q.argmax(-1))
    assert len(set(q.argmax(-1))) > 1


def test_sac_deterministic_action_is_the_squashed_mean(pendulum):
    agent = make_sac(pendulum, compile=False)
    obs = random_obs(64, 3)
    mean = np_forward(agent.actor, obs)[:, :1]
    np.testing.assert_allclose(agent.act(obs, deterministic=True), 2.0 * np.tanh(mean), rtol=1e-5, atol=1e-6)
    assert not np.allclose(agent.act(obs), 2.0 * np.tanh(mean), atol=1e-3)  # sampling really samples


def test_discrete_sac_deterministic_action_is_the_argmax_of_the_logits():
    agent = make_sac(gym.make("LunarLander-v3"), compile=False)
    perturb(agent.actor, 1)
    obs = random_obs(256, 8)
    logits = np_forward(agent.actor, obs)
    np.testing.assert_array_equal(agent.act(obs, deterministic=True), logits.argmax(-1))
    assert len(set(logits.argmax(-1))) > 1


@pytest.mark.parametrize("algo", [kerasrl.TD3, kerasrl.DDPG])
def test_deterministic_policy_acts_with_the_actor_and_no_noise(pendulum, algo):
    agent = algo.from_env(pendulum, hidden=HIDDEN, seed=0)
    obs = random_obs(16, 3)
    expected = 2.0 * np_forward(agent.actor, obs)
    noise = np.full((16, 1), 0.5, np.float32)
    np.testing.assert_allclose(agent.act(obs, deterministic=True, noise=noise), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(agent.act(obs, noise=noise), 2.0 * np.clip(expected / 2.0 + 0.5, -1, 1),
                               rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- TD3, DDPG
@pytest.mark.parametrize("algo", [kerasrl.TD3, kerasrl.DDPG])
def test_actor_loss_is_minus_the_first_critic_of_the_actor(pendulum, algo):
    agent = algo.from_env(pendulum, hidden=HIDDEN, seed=0)
    agent.compile(optimizer=FROZEN)
    for i, critic in enumerate(agent.critics):
        perturb(critic, 10 + i)
    batch = box_batch()
    obs = np.asarray(batch["observation"])
    expected = -np.mean(q_of(agent.critics[0], obs, np_forward(agent.actor, obs)))
    logs = None
    for _ in range(agent.policy_delay):  # TD3 updates its actor on every policy_delay-th step
        logs = agent.train_on_batch(batch, return_dict=True)
    assert logs["actor_loss"] == pytest.approx(expected, rel=1e-4)
    if len(agent.critics) > 1:  # the critics differ, so using the other one would show
        other = -np.mean(q_of(agent.critics[1], obs, np_forward(agent.actor, obs)))
        assert abs(other - expected) > 1e-2


@pytest.mark.parametrize("algo", [kerasrl.TD3, kerasrl.DDPG])
def test_actor_steps_climb_the_critic(pendulum, algo):
    agent = algo.from_env(pendulum, hidden=HIDDEN, seed=0)
    agent.compile(optimizer=FROZEN, actor_optimizer=keras.optimizers.SGD(0.01))
    batch = box_batch()
    obs = np.asarray(batch["observation"])

    def q1_of_policy() -> float:
        return float(np.mean(q_of(agent.critics[0], obs, np_forward(agent.actor, obs))))

    before = q1_of_policy()
    for _ in range(10):
        agent.train_on_batch(batch)
    assert q1_of_policy() > before + 1e-3


# -------------------------------------------------------------------- SAC
def test_tanh_gaussian_log_prob_matches_the_density():
    rng = np.random.default_rng(0)
    u, mean = rng.normal(size=(50, 2)), rng.normal(size=(50, 2))
    log_std = rng.uniform(-2, 1, size=(50, 2))
    std = np.exp(log_std)
    log_normal = -0.5 * ((u - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
    expected = np.sum(log_normal - np.log(1 - np.tanh(u) ** 2), axis=-1)  # change of variables a = tanh(u)
    got = gaussian_log_prob_tanh(*(keras.ops.convert_to_tensor(x, "float32") for x in (u, mean, log_std)))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-4)


def test_sac_losses_on_a_hand_computed_batch_with_a_reward_scale_schedule(pendulum):
    agent = make_sac(pendulum, compile=False, gamma=0.9, reward_scale=schedules.Linear(3.0, 1.0, 100))
    agent.compile(optimizer=FROZEN)
    perturb_targets(agent)
    agent.log_alpha.assign(math.log(0.3))
    agent.num_gradient_steps.assign(50)  # halfway: the reward scale is 2.0
    batch = box_batch()
    s, s_next = np.asarray(batch["observation"]), np.asarray(batch["next_observation"])
    r, d, w = (np.asarray(batch[k]) for k in ("reward", "terminated", "weight"))
    alpha = 0.3
    # The update's own draws (same step, same salts): a' ~ pi(.|s') and a ~ pi(.|s).
    a_next, log_pi_next = (np.asarray(x) for x in agent.sample_action(s_next, salt=0))
    a_pi, log_pi = (np.asarray(x) for x in agent.sample_action(s, salt=1))

    q_next = np.minimum(q_of(agent.critic1_target, s_next, a_next), q_of(agent.critic2_target, s_next, a_next))
    y = 2.0 * r + 0.9 * (1 - d) * (q_next - alpha * log_pi_next)
    unit_a = np.asarray(batch["action"]) / 2.0
    q1, q2 = q_of(agent.critic1, s, unit_a), q_of(agent.critic2, s, unit_a)
    critic_loss = 0.5 * np.mean(w * ((q1 - y) ** 2 + (q2 - y) ** 2))
    min_q_pi = np.minimum(q_of(agent.critic1, s, a_pi), q_of(agent.critic2, s, a_pi))
    actor_loss = np.mean(alpha * log_pi - min_q_pi)
    entropy = -np.mean(log_pi)
    alpha_loss = math.log(alpha) * (entropy - agent.target_entropy)

    logs = agent.update(batch)
    assert float(logs["critic_loss"]) == pytest.approx(critic_loss, rel=1e-4)
    assert float(logs["actor_loss"]) == pytest.approx(actor_loss, rel=1e-4)
    assert float(logs["alpha_loss"]) == pytest.approx(alpha_loss, rel=1e-4)
    assert float(logs["entropy"]) == pytest.approx(entropy, rel=1e-4)


def test_discrete_sac_losses_on_a_hand_computed_batch_with_a_reward_scale(cartpole):
    agent = make_sac(cartpole, compile=False, gamma=0.9, reward_scale=2.5)
    agent.compile(optimizer=FROZEN)
    perturb_targets(agent)
    agent.log_alpha.assign(math.log(0.4))
    rng = np.random.default_rng(3)
    s, s_next = random_obs(24, 4, 3), random_obs(24, 4, 4)
    actions, r = rng.integers(0, 2, 24), rng.normal(size=24)
    d, w = (rng.random(24) < 0.3).astype(np.float32), rng.uniform(0.2, 1.0, 24).astype(np.float32)
    batch = batch_dict(s, actions, r, s_next, d)
    batch["weight"] = keras.ops.convert_to_tensor(w)
    alpha = 0.4

    log_pi_next = log_softmax(np_forward(agent.actor, s_next))
    q_next = np.minimum(np_forward(agent.critic1_target, s_next), np_forward(agent.critic2_target, s_next))
    y = 2.5 * r + 0.9 * (1 - d) * (np.exp(log_pi_next) * (q_next - alpha * log_pi_next)).sum(-1)
    q1_all, q2_all = np_forward(agent.critic1, s), np_forward(agent.critic2, s)
    q1, q2 = q1_all[np.arange(24), actions], q2_all[np.arange(24), actions]
    critic_loss = 0.5 * np.mean(w * ((q1 - y) ** 2 + (q2 - y) ** 2))
    log_pi = log_softmax(np_forward(agent.actor, s))
    pi = np.exp(log_pi)
    actor_loss = np.mean((pi * (alpha * log_pi - np.minimum(q1_all, q2_all))).sum(-1))
    entropy = np.mean(-(pi * log_pi).sum(-1))

    logs = agent.update(batch)
    assert float(logs["critic_loss"]) == pytest.approx(critic_loss, rel=1e-4)
    assert float(logs["actor_loss"]) == pytest.approx(actor_loss, rel=1e-4)
    assert float(logs["alpha_loss"]) == pytest.approx(math.log(alpha) * (entropy - agent.target_entropy), rel=1e-4)


# ------------------------------------------------------------- evaluation
def test_eval_callback_is_deterministic_and_seeded(pendulum):
    agent = make_sac(pendulum)
    callback = rlcb.EvalCallback(gym.make("Pendulum-v1"), episodes=2, seed=7)
    callback.set_model(agent)
    first, second = {}, {}
    callback.on_epoch_end(0, first)
    callback.on_epoch_end(1, second)
    expected = agent.evaluate_env(gym.make("Pendulum-v1"), episodes=2, seed=7, deterministic=True)
    assert first["eval_return"] == second["eval_return"] == pytest.approx(float(np.mean(expected)), rel=1e-6)
    sampled = agent.evaluate_env(gym.make("Pendulum-v1"), episodes=2, seed=7, deterministic=False)
    assert float(np.mean(sampled)) != pytest.approx(first["eval_return"], rel=1e-6)
