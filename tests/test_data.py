"""EnvDataset: what it stores (terminated vs truncated), counters, vector envs, batches."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import TimeLimit

import kerasrl
from support import CountingEnv, make_data, make_sac, stored

AUTORESET_MODES = [gym.vector.AutoresetMode.SAME_STEP, gym.vector.AutoresetMode.NEXT_STEP]


def collect(data: kerasrl.EnvDataset, steps: int) -> dict[str, np.ndarray]:
    for _ in range(steps):
        data.step(random=True)
    return stored(data.buffer)


def replay_pendulum(actions: np.ndarray, seed: int, max_episode_steps: int, episodes: int) -> list[np.ndarray]:
    """The observations a fresh Pendulum produces for `actions`: (obs, next_obs) per step."""
    env = gym.make("Pendulum-v1", max_episode_steps=max_episode_steps)
    obs_list, next_list, k = [], [], 0
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed if episode == 0 else None)
        done = False
        while not done:
            nxt, _, terminated, truncated, _ = env.step(actions[k])
            obs_list.append(obs)
            next_list.append(nxt)
            obs, done, k = nxt, terminated or truncated, k + 1
    return np.array(obs_list), np.array(next_list)


# ------------------------------------------------------------- single env
def test_truncation_single_env_stores_true_final_observation():
    env = gym.make("Pendulum-v1", max_episode_steps=5)
    agent = make_sac(env, compile=False)
    data = make_data(env, agent, learning_starts=0, seed=0)
    s = collect(data, 10)
    assert data.env_steps == 10 and data.episodes == 2 and len(data.buffer) == 10
    # A time limit is not a terminal state: bootstrap through it.
    np.testing.assert_array_equal(s["terminated"], np.zeros(10))
    # The stored next observations are exactly what the env produced, including
    # the final one of each truncated episode (not the reset observation).
    ref_obs, ref_next = replay_pendulum(s["action"], seed=0, max_episode_steps=5, episodes=2)
    np.testing.assert_array_equal(s["observation"], ref_obs.astype(np.float32))
    np.testing.assert_array_equal(s["next_observation"], ref_next.astype(np.float32))
    # Within an episode the chain is continuous; across the truncation it is not.
    np.testing.assert_array_equal(s["next_observation"][:4], s["observation"][1:5])
    assert not np.allclose(s["next_observation"][4], s["observation"][5])
    assert list(data.recent_lengths) == [5, 5]


def test_termination_single_env_cartpole_stores_terminated():
    env = gym.make("CartPole-v1")
    agent = make_sac(env, compile=False)
    data = make_data(env, agent, learning_starts=0, seed=0)
    while data.episodes < 3:
        data.step(random=True)
    s = stored(data.buffer)
    ends = np.flatnonzero(s["terminated"])
    assert len(ends) == 3 and ends[-1] == len(data.buffer) - 1
    for i in ends:
        x, theta = s["next_observation"][i][0], s["next_observation"][i][2]
        # The true last state is out of bounds (the reset state never is).
        assert abs(x) > 2.4 or abs(theta) > 12 * 2 * np.pi / 360
    for i in ends[:-1]:
        assert np.all(np.abs(s["observation"][i + 1]) <= 0.05)  # the next episode's reset state
    lengths = np.diff(np.concatenate([[-1], ends]))
    assert list(data.recent_lengths) == list(lengths)
    assert data.recent_returns[0] == pytest.approx(lengths[0])  # CartPole: +1 per step


@pytest.mark.parametrize("terminate_at,limit", [(3, 10), (None, 3), (3, 3)])
def test_single_env_exact_transitions(terminate_at, limit):
    env = TimeLimit(CountingEnv(terminate_at=terminate_at), max_episode_steps=limit)
    agent = make_sac(env, compile=False)
    data = make_data(env, agent, learning_starts=0)
    s = collect(data, 9)
    ep, t = s["observation"][:, 0], s["observation"][:, 1]
    np.testing.assert_array_equal(ep, np.repeat([0, 1, 2], 3))
    np.testing.assert_array_equal(t, np.tile([0, 1, 2], 3))
    np.testing.assert_array_equal(s["next_observation"][:, 0], ep)
    np.testing.assert_array_equal(s["next_observation"][:, 1], t + 1)
    np.testing.assert_array_equal(s["reward"], t + 1)
    expected_terminated = (t + 1 == 3) if terminate_at == 3 else np.zeros(9, bool)
    np.testing.assert_array_equal(s["terminated"], expected_terminated.astype(np.float32))
    assert data.episodes == 3


# ------------------------------------------------------------- vector envs
@pytest.mark.parametrize("mode", AUTORESET_MODES, ids=lambda m: m.name)
def test_vector_pendulum_truncation(mode):
    make = lambda: gym.make("Pendulum-v1", max_episode_steps=5)
    venv = gym.vector.SyncVectorEnv([make, make], autoreset_mode=mode)
    agent = make_sac(venv, compile=False)
    data = make_data(venv, agent, learning_starts=0, seed=0)
    steps = 10 if mode == gym.vector.AutoresetMode.SAME_STEP else 11  # NEXT_STEP: 1 reset step per episode
    s = collect(data, steps)
    assert len(data.buffer) == data.env_steps == 20 and data.episodes == 4
    np.testing.assert_array_equal(s["terminated"], np.zeros(20))
    for i in range(2):  # rows alternate between the two sub-envs; sub-env i was reset with seed i
        rows = {k: v[i::2] for k, v in s.items()}
        ref_obs, ref_next = replay_pendulum(rows["action"], seed=i, max_episode_steps=5, episodes=2)
        np.testing.assert_array_equal(rows["observation"], ref_obs.astype(np.float32))
        np.testing.assert_array_equal(rows["next_observation"], ref_next.astype(np.float32))
        assert not np.allclose(rows["next_observation"][4], rows["observation"][5])


@pytest.mark.parametrize("mode", AUTORESET_MODES, ids=lambda m: m.name)
def test_vector_env_terminated_and_truncated(mode):
    """Sub-env 0 terminates after 3 steps, sub-env 1 is truncated after 4: they drift apart."""
    venv = gym.vector.SyncVectorEnv(
        [lambda: TimeLimit(CountingEnv(terminate_at=3, tag=0), 10),
         lambda: TimeLimit(CountingEnv(tag=1), 4)],
        autoreset_mode=mode,
    )
    agent = make_sac(venv, compile=False)
    data = make_data(venv, agent, learning_starts=0)
    s = collect(data, 13)
    tag, ep, t = s["observation"][:, 0] // 100, s["observation"][:, 0] % 100, s["observation"][:, 1]
    # Every stored transition is one real step: no row spans a reset.
    np.testing.assert_array_equal(s["next_observation"][:, 0], s["observation"][:, 0])
    np.testing.assert_array_equal(s["next_observation"][:, 1], t + 1)
    np.testing.assert_array_equal(s["reward"], t + 1)
    np.testing.assert_array_equal(s["terminated"], ((tag == 0) & (t + 1 == 3)).astype(np.float32))
    # Each sub-env's episodes are stored whole, in order.
    for k, length in ((0, 3), (1, 4)):
        rows = tag == k
        n = rows.sum()
        np.testing.assert_array_equal(t[rows], np.arange(n) % length)
        np.testing.assert_array_equal(ep[rows], np.arange(n) // length)
    skipped = 0 if mode == gym.vector.AutoresetMode.SAME_STEP else 13 // 4 + 13 // 5
    assert data.env_steps == len(data.buffer) == 26 - skipped
    assert data.episodes == sum(s["terminated"]) + np.sum((tag == 1) & (t + 1 == 4))


def test_env_id_with_two_envs():
    agent = make_sac(gym.make("Pendulum-v1"))
    data = kerasrl.EnvDataset("Pendulum-v1", agent, n_envs=2, buffer=kerasrl.ReplayBuffer(1000),
                              batch_size=8, learning_starts=10, seed=0, prefetch=0)
    assert data.n_envs == 2 and isinstance(data.env.env, gym.vector.VectorEnv)
    batch = data.next_batch()
    assert len(data.buffer) == data.env_steps == 12  # 5 random vector steps + 1 policy step, 2 envs each
    assert batch[0].shape == (8, 3)
    history = agent.fit(data, epochs=1, steps_per_epoch=5, verbose=0)
    assert agent.num_gradient_steps.numpy() == 5
    # The batch of the 5th update was collected at 12 + 2 * 5 env steps; the
    # tf.data iterator may have collected one batch beyond it.
    assert history.history["env_steps"][-1] == 22
    assert agent.num_env_steps.numpy() == 22
    assert data.env_steps in (22, 24) and len(data.buffer) == data.env_steps


# ------------------------------------------------------------- batches
def test_next_batch_fields_and_consistency():
    env = TimeLimit(CountingEnv(terminate_at=5), 50)
    agent = make_sac(env, compile=False)
    data = make_data(env, agent, learning_starts=20, batch_size=16, seed=0)
    out = data.next_batch()
    names = [name for name, _, _ in data._fields()]
    batch = dict(zip(names, out))
    assert len(data.buffer) == data.env_steps == 21  # warm-up + one policy step
    assert batch["observation"].shape == (16, 2) and batch["observation"].dtype == np.float32
    assert batch["action"].shape == (16, 1)
    assert batch["reward"].shape == (16,) and batch["terminated"].shape == (16,)
    # Sampled rows are real transitions.
    np.testing.assert_array_equal(batch["next_observation"][:, 1], batch["observation"][:, 1] + 1)
    np.testing.assert_array_equal(batch["terminated"], (batch["observation"][:, 1] == 4).astype(np.float32))
    assert int(batch["env_steps"]) == 21
    assert float(batch["episode_return"]) == 1 + 2 + 3 + 4 + 5
    assert float(batch["episode_length"]) == 5


def test_episode_stats_nan_before_first_episode():
    env = gym.make("Pendulum-v1")
    agent = make_sac(env, compile=False)
    data = make_data(env, agent, learning_starts=5)
    data.next_batch()
    stats = data.stats()
    assert np.isnan(stats["episode_return"]) and np.isnan(stats["episode_length"])
    assert stats["env_steps"] == 6


def test_train_freq_and_gradient_steps():
    env = gym.make("Pendulum-v1")
    agent = make_sac(env, compile=False)
    data = make_data(env, agent, learning_starts=10, train_freq=4, gradient_steps=2)
    counts = []
    for _ in range(6):
        data.next_batch()
        counts.append(data.env_steps)
    # Each round: 4 env steps, then 2 batches.
    assert counts == [14, 14, 18, 18, 22, 22]
    assert data.updates_for(100) == (100 - 22) // 4 * 2


def test_seeded_collection_is_reproducible():
    def run():
        env = gym.make("Pendulum-v1")
        agent = make_sac(env, compile=False, seed=1)
        data = make_data(env, agent, learning_starts=5, seed=7)
        for _ in range(5):
            data.next_batch()
        return stored(data.buffer)

    a, b = run(), run()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_fit_on_plain_env(pendulum):
    agent = make_sac(pendulum)
    history = agent.fit(pendulum, epochs=1, steps_per_epoch=50, verbose=0)
    assert agent.num_gradient_steps.numpy() == 50
    # Default EnvDataset: 100 random warm-up steps, then one env step per update.
    assert history.history["env_steps"] == [150.0]
    assert agent.num_env_steps.numpy() == 150
    assert np.isfinite(history.history["critic_loss"][0])


def test_fit_on_env_id():
    agent = make_sac(gym.make("CartPole-v1"))
    history = agent.fit("CartPole-v1", epochs=1, steps_per_epoch=20, verbose=0)
    assert agent.num_gradient_steps.numpy() == 20
    assert np.isfinite(history.history["episode_return"][0])  # CartPole finishes episodes in 100 steps


def test_rounds_of_updates_come_in_chunks_with_exact_collection(cartpole):
    """gradient_steps > 1: batches arrive in chunks that divide the round and the epoch,
    and collection stays exactly one round of train_freq steps per gradient_steps updates."""
    agent = make_sac(cartpole)
    data = make_data(cartpole, agent, learning_starts=32, train_freq=16, gradient_steps=8)
    batches = data.next_batches(3)
    assert batches[0].shape == (3, 16, 4) and data.env_steps == 32 + 16
    history = agent.fit(data, epochs=2, steps_per_epoch=20, verbose=0)  # chunks of gcd(8, 20) = 4
    # 3 batches taken above + 20 + 20 updates = 43 batches = 6 rounds (the 6th begun).
    assert history.history["env_steps"] == [32.0 + 3 * 16, 32.0 + 6 * 16]
    assert int(agent.num_gradient_steps.numpy()) == 40


@pytest.mark.parametrize("policy_sync_every, chunk", [(4, 4), (3, 2), (1, 1)])
def test_one_update_per_step_comes_in_chunks_bounded_by_policy_sync_every(cartpole, policy_sync_every, chunk):
    """gradient_steps=1: chunks of up to policy_sync_every batches that divide the epoch,
    still one env step per update and nothing collected past the end of the epoch."""
    agent = make_sac(cartpole)
    data = make_data(cartpole, agent, learning_starts=32, policy_sync_every=policy_sync_every)
    counts = []
    next_batches = data.next_batches
    data.next_batches = lambda count, generation=None: counts.append(count) or next_batches(count, generation)
    agent.fit(data, epochs=1, steps_per_epoch=20, verbose=0)
    assert set(counts) == {chunk} and sum(counts) == 20
    assert data.env_steps == 32 + 20
