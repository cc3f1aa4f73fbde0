"""n-step and whole-episode returns in the replay buffers, and their use in targets."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import kerasrl
from support import HIDDEN, make_sac

GAMMA = 0.9


def expected_transitions(steps, n, gamma=GAMMA):
    """Brute force: the n-step transitions of one environment's step list.

    `steps` holds (reward, terminated, truncated); observation t is [t] and the
    next observation of step t is [t + 0.5]. Returns the transitions whose
    window is complete, in the order they become complete.
    """
    out = []
    ends = [i for i, (_, term, trunc) in enumerate(steps) if term or trunc]
    for t in range(len(steps)):
        end = next((e for e in ends if e >= t), None)  # last step of t's episode
        last = t + n - 1 if n != "episode" else None
        if last is None or (end is not None and end <= last):
            if end is None:
                continue  # episode still running
            last = end
        if last >= len(steps):
            continue  # window not complete yet
        m = last - t + 1
        ret = sum(gamma ** k * steps[t + k][0] for k in range(m))
        terminated = float(steps[last][1]) if last == end else 0.0
        out.append((last, t, ret, last + 0.5, terminated, gamma ** m))
    out.sort()  # emitted when the window's last step is added, oldest first
    return [item[1:] for item in out]


def fill(buffer, steps, env_id=0):
    for t, (reward, terminated, truncated) in enumerate(steps):
        buffer.add(np.array([t], np.float32), np.array([0.0], np.float32), reward,
                   np.array([t + 0.5], np.float32), terminated, truncated=truncated, env_ids=[env_id])


def stored_tuples(buffer):
    s = {k: v[: buffer.size] for k, v in buffer.storage.items()}
    return [(int(s["observation"][i, 0]), float(s["reward"][i]), float(s["next_observation"][i, 0]),
             float(s["terminated"][i]), float(s["discount"][i])) for i in range(buffer.size)]


step_lists = st.lists(
    st.tuples(st.integers(-3, 3).map(float), st.booleans(), st.booleans()).map(
        lambda s: (s[0], s[1], s[2] and not s[1])),  # terminated wins over truncated
    min_size=1, max_size=25)


@given(steps=step_lists, n=st.sampled_from([2, 3, 5, "episode"]))
def test_n_step_returns_match_brute_force(steps, n):
    buffer = kerasrl.ReplayBuffer(100, n_step=n, gamma=GAMMA)
    fill(buffer, steps)
    got = stored_tuples(buffer) if buffer.size else []
    want = expected_transitions(steps, n)
    assert len(got) == len(want)
    for (t, r, nxt, term, disc), (t2, r2, nxt2, term2, disc2) in zip(got, want):
        assert (t, nxt, term) == (t2, nxt2, term2)
        assert r == pytest.approx(r2, rel=1e-5, abs=1e-5) and disc == pytest.approx(disc2, rel=1e-6)


def test_truncation_bootstraps_and_termination_does_not():
    buffer = kerasrl.ReplayBuffer(10, n_step=3, gamma=GAMMA)
    # Episode A: truncated after 2 steps; episode B: terminated after 1.
    fill(buffer, [(1.0, False, False), (2.0, False, True), (4.0, True, False)])
    got = stored_tuples(buffer)
    assert got[0] == (0, pytest.approx(1 + GAMMA * 2), 1.5, 0.0, pytest.approx(GAMMA ** 2))
    assert got[1] == (1, 2.0, 1.5, 0.0, pytest.approx(GAMMA))
    assert got[2] == (2, 4.0, 2.5, 1.0, pytest.approx(GAMMA))


def test_vector_envs_keep_separate_windows():
    buffer = kerasrl.ReplayBuffer(10, n_step=2, gamma=GAMMA)
    for t in range(3):  # env 0 rewards 1, env 1 rewards 10, interleaved in each batch
        buffer.add(np.array([[t], [100 + t]], np.float32), np.zeros((2, 1), np.float32), [1.0, 10.0],
                   np.array([[t + 0.5], [100 + t + 0.5]], np.float32), [False, False])
    got = sorted(stored_tuples(buffer))
    assert [g[0] for g in got] == [0, 1, 100, 101]
    assert got[0][1] == pytest.approx(1 + GAMMA) and got[2][1] == pytest.approx(10 + 10 * GAMMA)
    assert got[2][2] == 101.5


def test_episode_mode_rates_the_whole_episode():
    buffer = kerasrl.ReplayBuffer(10, n_step="episode", gamma=GAMMA)
    fill(buffer, [(1.0, False, False), (1.0, False, False)])
    assert len(buffer) == 0  # nothing until the episode ends
    fill(buffer, [(1.0, True, False)])
    # fill restarts t at 0, so the third step is stored with observation [0]: check values only.
    returns = sorted(r for _, r, _, _, _ in stored_tuples(buffer))
    assert returns == pytest.approx(sorted([1 + GAMMA + GAMMA ** 2, 1 + GAMMA, 1.0]))
    assert all(term == 1.0 for *_, term, _ in stored_tuples(buffer))


def test_n_step_needs_gamma_and_valid_n():
    with pytest.raises(ValueError, match="n_step"):
        kerasrl.ReplayBuffer(10, n_step=0)
    with pytest.raises(ValueError, match="n_step"):
        kerasrl.ReplayBuffer(10, n_step="all")
    buffer = kerasrl.ReplayBuffer(10, n_step=3)
    with pytest.raises(ValueError, match="gamma"):
        buffer.add([0.0], [0.0], 1.0, [1.0], False)


def test_env_dataset_gives_the_agent_gamma_and_rejects_a_different_one(pendulum):
    agent = make_sac(pendulum, gamma=0.95)
    buffer = kerasrl.ReplayBuffer(100, n_step=3)
    kerasrl.EnvDataset(pendulum, agent, buffer=buffer, batch_size=8)
    assert buffer.gamma == 0.95
    with pytest.raises(ValueError, match="gamma"):
        kerasrl.EnvDataset(pendulum, agent, buffer=kerasrl.ReplayBuffer(100, n_step=3, gamma=0.99), batch_size=8)


def test_save_load_keeps_discounts_and_rejects_other_n_step(tmp_path):
    buffer = kerasrl.ReplayBuffer(10, n_step=2, gamma=GAMMA)
    fill(buffer, [(1.0, False, False), (2.0, False, False), (3.0, True, False)])
    buffer.save(tmp_path / "b.npz")
    again = kerasrl.ReplayBuffer(10, n_step=2, gamma=GAMMA).load(tmp_path / "b.npz")
    assert stored_tuples(again) == stored_tuples(buffer)
    one_step = kerasrl.ReplayBuffer(10)
    with pytest.raises(ValueError, match="fields"):
        one_step.load(tmp_path / "b.npz")
    assert len(one_step) == 0


@pytest.mark.parametrize("n_step", [3, "episode"])
def test_agents_fit_on_n_step_buffers(n_step, cartpole):
    for agent in (kerasrl.DQN.from_env(cartpole, hidden=HIDDEN, seed=0), make_sac(cartpole, compile=False)):
        agent.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
        data = kerasrl.EnvDataset(cartpole, agent, buffer=kerasrl.ReplayBuffer(1000, n_step=n_step),
                                  batch_size=16, learning_starts=64, seed=0)
        history = agent.fit(data, epochs=1, steps_per_epoch=20, verbose=0)
        assert np.isfinite(history.history["loss"][-1])
        discounts = data.buffer.storage["discount"][: len(data.buffer)]
        assert np.all(discounts <= agent.gamma + 1e-6) and np.any(discounts < agent.gamma - 1e-6)


def test_dqn_target_uses_the_batch_discount(cartpole):
    agent = kerasrl.DQN.from_env(cartpole, hidden=HIDDEN, seed=0, double=False, loss="mse")
    agent.compile(optimizer=keras.optimizers.SGD(0.0))  # measure the loss without learning
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(8, 4)).astype(np.float32)
    next_obs = rng.normal(size=(8, 4)).astype(np.float32)
    batch = {"observation": obs, "action": rng.integers(0, 2, 8), "reward": rng.normal(size=8).astype(np.float32),
             "next_observation": next_obs, "terminated": np.array([0, 1] * 4, np.float32),
             "discount": np.full(8, 0.5, np.float32)}
    q = agent.q_network(obs).numpy()[np.arange(8), batch["action"]]
    y = batch["reward"] + 0.5 * (1 - batch["terminated"]) * agent.q_target(next_obs).numpy().max(-1)
    logs = agent.train_on_batch(batch, return_dict=True)
    assert logs["loss"] == pytest.approx(np.mean(0.5 * (q - y) ** 2), rel=1e-4)
