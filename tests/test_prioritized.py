"""Prioritized replay: segment trees, sampling, IS weights, the genetic rule,
PriorityRefresh inside fit, persistence and resume."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import kerasrl
from kerasrl import callbacks as rlcb, schedules
from kerasrl.buffers import SegmentTree
from support import HIDDEN, make_sac

updates = st.lists(st.tuples(st.integers(0, 40), st.floats(0.0, 100.0)), min_size=1, max_size=60)


@given(capacity=st.integers(1, 41), updates=updates)
def test_segment_trees_match_brute_force(capacity, updates):
    values = {op: np.full(capacity, neutral) for op, neutral in (("sum", 0.0), ("min", np.inf), ("max", 0.0))}
    trees = {op: SegmentTree(capacity, op) for op in values}
    for index, value in updates:
        index %= capacity
        for op in values:
            values[op][index] = value
            trees[op].update([index], [value])
    assert trees["sum"].root == pytest.approx(values["sum"].sum())
    assert trees["min"].root == values["min"].min()
    assert trees["max"].root == values["max"].max()
    np.testing.assert_array_equal(trees["sum"][np.arange(capacity)], values["sum"])


# No subnormal priorities: there fraction * total can round up to the total itself.
@given(priorities=st.lists(st.floats(0.0, 10.0, allow_subnormal=False), min_size=1, max_size=50), fractions=st.lists(
    st.floats(0.0, 0.999999), min_size=1, max_size=20))
def test_prefix_sum_search_matches_cumsum(priorities, fractions):
    p = np.asarray(priorities)
    if p.sum() == 0:
        p[0] = 1.0
    tree = SegmentTree(len(p), "sum")
    tree.update(np.arange(len(p)), p)
    prefix = np.asarray(fractions) * p.sum()
    found = tree.find_prefix_sum(prefix)
    want = np.searchsorted(np.cumsum(p), prefix, side="right")
    # Leaves of zero priority are never picked; away from float round-off the leaf is exact.
    assert np.all(p[found] > 0)
    cumsum = np.cumsum(p)
    exact = np.abs(prefix[:, None] - cumsum[None]).min(1) > 1e-9
    np.testing.assert_array_equal(found[exact], want[exact])


def transitions(n, start=0):
    obs = np.arange(start, start + n, dtype=np.float32)[:, None]
    return obs, np.zeros((n, 1), np.float32), np.ones(n, np.float32), obs + 0.5, np.zeros(n)


def test_new_transitions_get_the_max_priority_and_sampling_follows_priorities():
    buffer = kerasrl.PrioritizedReplayBuffer(64, alpha=1.0, epsilon=0.0, seed=0)
    buffer.add(*transitions(4))
    np.testing.assert_array_equal(buffer.priorities(), [1, 1, 1, 1])
    buffer.update_priorities([0, 1, 2, 3], [1.0, 2.0, 3.0, 4.0])
    buffer.add(*transitions(1, start=4))
    assert buffer.priorities()[4] == 4.0  # the largest seen so far
    counts = np.zeros(5)
    for _ in range(400):
        _, indices = buffer.sample(50)
        np.add.at(counts, indices, 1)
    np.testing.assert_allclose(counts / counts.sum(), np.array([1, 2, 3, 4, 4]) / 14, atol=0.01)


def test_alpha_flattens_priorities():
    buffer = kerasrl.PrioritizedReplayBuffer(4, alpha=0.5, epsilon=0.0)
    buffer.add(*transitions(2))
    buffer.update_priorities([0, 1], [4.0, 9.0])
    np.testing.assert_allclose(buffer.priorities(), [2.0, 3.0])


def test_importance_sampling_weights():
    beta = schedules.Linear(0.4, 1.0, 100)
    buffer = kerasrl.PrioritizedReplayBuffer(128, alpha=1.0, beta=beta, epsilon=0.0, seed=0)
    buffer.add(*transitions(4))
    buffer.update_priorities([0, 1, 2, 3], [1.0, 2.0, 4.0, 8.0])
    batch, indices = buffer.sample(64)
    p = np.array([1.0, 2.0, 4.0, 8.0])
    n, prob = 4, p / p.sum()
    b = beta(buffer.num_added)
    assert b == pytest.approx(0.4 + 0.6 * 4 / 100)
    w = (n * prob) ** -b
    np.testing.assert_allclose(batch["weight"], (w / w.max())[indices], rtol=1e-5)
    assert batch["weight"].max() <= 1.0 and batch["weight"].dtype == np.float32
    buffer.add(*transitions(4, start=4))
    for _ in range(12):
        buffer.add(*transitions(8, start=8))  # beta anneals with stored transitions
    batch, indices = buffer.sample(64)
    p = buffer.priorities()
    np.testing.assert_allclose(batch["weight"], ((p / p.min()) ** -1.0)[indices], rtol=1e-5)


def test_genetic_rule():
    rule = kerasrl.GeneticPriority(power=0.6, epsilon=0.01, min_priority=0.1, max_priority=1.0,
                                   weight_power=schedules.Linear(0.4, 1.0, 10))
    buffer = kerasrl.PrioritizedReplayBuffer(64, priority=rule, seed=0)
    buffer.add(*transitions(4))
    np.testing.assert_array_equal(buffer.priorities(), 1.0)  # max_priority
    td = np.array([0.0, 0.5, 5.0, 1000.0])
    buffer.update_priorities(np.arange(4), -td)  # sign does not matter
    expected = np.clip((td + 0.01) ** -0.6, 0.1, 1.0)
    np.testing.assert_allclose(buffer.priorities(), expected)
    assert expected[0] == 1.0 and expected[3] == 0.1  # well-predicted transitions are favoured
    batch, indices = buffer.sample(32)
    w = 0.4 + 0.6 * 4 / 10
    np.testing.assert_allclose(batch["weight"], ((expected / expected.max()) ** w)[indices], rtol=1e-5)
    buffer.add(*transitions(8, start=4))  # 12 stored: w has reached 1
    batch, indices = buffer.sample(32)
    p = buffer.priorities()
    np.testing.assert_allclose(batch["weight"], (p / p.max())[indices], rtol=1e-5)


def test_bad_priorities_and_rules():
    buffer = kerasrl.PrioritizedReplayBuffer(4)
    buffer.add(*transitions(2))
    before = buffer.priorities().copy()
    with pytest.raises(ValueError, match="Non-finite TD"):
        buffer.update_priorities([0, 1], [np.nan, 1.0])
    np.testing.assert_array_equal(buffer.priorities(), before)
    with pytest.raises(ValueError, match="priority"):
        kerasrl.PrioritizedReplayBuffer(4, priority="rank")
    with pytest.raises(ValueError, match="min_priority"):
        kerasrl.GeneticPriority(min_priority=2.0, max_priority=1.0)


@pytest.mark.parametrize("priority", ["proportional", "genetic"])
def test_save_load_round_trip(priority, tmp_path):
    buffer = kerasrl.PrioritizedReplayBuffer(16, priority=priority, seed=0)
    buffer.add(*transitions(6))
    buffer.update_priorities(np.arange(6), np.linspace(0.1, 3, 6))
    buffer.save(tmp_path / "per.npz")
    again = kerasrl.PrioritizedReplayBuffer(16, priority=priority).load(tmp_path / "per.npz")
    np.testing.assert_array_equal(again.priorities(), buffer.priorities())
    assert again.max_seen == buffer.max_seen and again.num_added == buffer.num_added == 6
    a, ia = buffer.sample(16)
    b, ib = again.sample(16)
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_array_equal(a["weight"], b["weight"])
    # A uniform buffer's file has no priorities: a clear error, nothing changed.
    plain = kerasrl.ReplayBuffer(16)
    plain.add(*transitions(3))
    plain.save(tmp_path / "plain.npz")
    with pytest.raises(ValueError, match="priorities"):
        again.load(tmp_path / "plain.npz")
    assert len(again) == 6


class RecordingBuffer(kerasrl.PrioritizedReplayBuffer):
    """A prioritized buffer that also records each priority update."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def update_priorities(self, indices, td_errors):
        self.calls.append((np.array(indices), np.array(td_errors)))
        super().update_priorities(indices, td_errors)


@pytest.mark.parametrize("steps_per_execution, jit_compile", [(1, False), (4, True)])
def test_priority_refresh_writes_every_update(steps_per_execution, jit_compile, cartpole):
    agent = kerasrl.DQN.from_env(cartpole, hidden=HIDDEN, seed=0)
    agent.compile(optimizer=keras.optimizers.Adam(1e-3), steps_per_execution=steps_per_execution,
                  jit_compile=jit_compile)
    buffer = RecordingBuffer(1000, alpha=1.0, epsilon=0.0, seed=0)
    data = kerasrl.EnvDataset(cartpole, agent, buffer=buffer, batch_size=16, learning_starts=64, seed=0)
    agent.fit(data, epochs=2, steps_per_epoch=10, verbose=0, callbacks=[rlcb.PriorityRefresh()])
    # Every update's 16 TD errors reach the buffer, in order, by the end of fit.
    indices = np.concatenate([i for i, _ in buffer.calls])
    td = np.concatenate([t for _, t in buffer.calls])
    assert indices.shape == td.shape == (20 * 16,) == (int(agent.num_gradient_steps.numpy()) * 16,)
    assert np.all(td >= 0) and np.all((indices >= 0) & (indices < len(buffer)))
    # The last write of each index is what the tree holds (alpha=1, epsilon=0: priority = |delta|).
    last = {i: t for i, t in zip(indices, td)}
    np.testing.assert_allclose(buffer.priorities()[list(last)], list(last.values()), rtol=1e-6)
    assert data.apply_priorities is None  # disconnected after fit


def test_fit_adds_priority_refresh_and_sac_takes_a_genetic_buffer(pendulum):
    agent = make_sac(pendulum)
    buffer = kerasrl.PrioritizedReplayBuffer(1000, priority="genetic", seed=0)
    data = kerasrl.EnvDataset(pendulum, agent, buffer=buffer, batch_size=16, learning_starts=64, seed=0)
    history = agent.fit(data, epochs=1, steps_per_epoch=20, verbose=0)
    p = buffer.priorities()
    assert np.all((p >= 0.1) & (p <= 1.0)) and np.any(p < 1.0)  # refreshed from SAC's TD errors
    assert np.isfinite(history.history["critic_loss"][-1])


def test_priority_refresh_needs_a_prioritized_buffer(cartpole):
    agent = kerasrl.DQN.from_env(cartpole, hidden=HIDDEN, seed=0)
    agent.compile(optimizer="adam")
    data = kerasrl.EnvDataset(cartpole, agent, buffer=kerasrl.ReplayBuffer(100), batch_size=8, learning_starts=16)
    with pytest.raises(ValueError, match="PrioritizedReplayBuffer"):
        agent.fit(data, epochs=1, steps_per_epoch=2, verbose=0, callbacks=[rlcb.PriorityRefresh()])


def test_prioritized_buffer_survives_checkpoint_and_resume(tmp_path, cartpole):
    agent = kerasrl.DQN.from_env(cartpole, hidden=HIDDEN, seed=0, dueling=True)
    agent.compile(optimizer=keras.optimizers.Adam(1e-3))
    beta = schedules.Linear(0.4, 1.0, 5000)
    buffer = kerasrl.PrioritizedReplayBuffer(500, alpha=0.7, beta=beta, n_step=3, seed=0)
    data = kerasrl.EnvDataset(cartpole, agent, buffer=buffer, batch_size=16, learning_starts=64, seed=0,
                              exploration=schedules.Piecewise([(0, 1.0), (500, 0.1)]))
    agent.fit(data, epochs=2, steps_per_epoch=20, verbose=0,
              callbacks=[rlcb.Checkpoint(tmp_path / "ckpt", every_steps=10_000)])
    again, data2 = kerasrl.resume(tmp_path / "ckpt")
    buffer2 = data2.buffer
    assert type(buffer2) is kerasrl.PrioritizedReplayBuffer
    assert (buffer2.alpha, buffer2.n_step, buffer2.gamma) == (0.7, 3, agent.gamma)
    assert buffer2.beta.get_config() == beta.get_config()
    np.testing.assert_array_equal(buffer2.priorities(), buffer.priorities())
    assert buffer2.num_added == buffer.num_added and buffer2.max_seen == buffer.max_seen
    assert data2.exploration.get_config() == data.exploration.get_config()
    history = again.fit(data2, epochs=3, initial_epoch=data2.initial_epoch, steps_per_epoch=20, verbose=0)
    assert history.epoch == [2] and int(again.num_gradient_steps.numpy()) == 60
    assert np.isfinite(history.history["loss"][-1])
