"""ReplayBuffer: storage, circular indexing, sampling, .npz persistence, validation."""

import json
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kerasrl import ReplayBuffer


def transition(i: int, obs_dim: int = 3, act_dim: int = 2):
    """A transition whose every field encodes `i`."""
    return (
        np.full(obs_dim, i, dtype=np.float32),
        np.full(act_dim, -i, dtype=np.float32),
        float(i),
        np.full(obs_dim, i + 0.5, dtype=np.float32),
        i % 2 == 0,
    )


def batch(start: int, n: int, obs_dim: int = 3, act_dim: int = 2):
    items = [transition(i, obs_dim, act_dim) for i in range(start, start + n)]
    return tuple(np.stack([np.asarray(item[k]) for item in items]) for k in range(5))


def test_single_add_allocates_with_shapes_and_dtypes():
    buf = ReplayBuffer(10)
    assert len(buf) == 0 and buf.storage is None and buf.nbytes == 0
    buf.add(*transition(7))
    assert len(buf) == 1 and buf.position == 1
    s = buf.storage
    assert s["observation"].shape == (10, 3) and s["observation"].dtype == np.float32
    assert s["action"].shape == (10, 2)
    assert s["reward"].shape == (10,) and s["reward"].dtype == np.float32
    assert s["terminated"].shape == (10,) and s["terminated"].dtype == np.float32
    np.testing.assert_array_equal(s["observation"][0], [7, 7, 7])
    np.testing.assert_array_equal(s["action"][0], [-7, -7])
    assert s["reward"][0] == 7.0
    np.testing.assert_array_equal(s["next_observation"][0], [7.5, 7.5, 7.5])
    assert s["terminated"][0] == 0.0


def test_batch_add_matches_single_adds():
    a, b = ReplayBuffer(8), ReplayBuffer(8)
    a.add(*batch(0, 5))
    for i in range(5):
        b.add(*transition(i))
    assert (a.position, a.size) == (b.position, b.size) == (5, 5)
    for name in a.storage:
        np.testing.assert_array_equal(a.storage[name], b.storage[name])
    np.testing.assert_array_equal(a.storage["terminated"][:5], [1, 0, 1, 0, 1])


def test_circular_overwrite_keeps_newest():
    buf = ReplayBuffer(4)
    buf.add(*batch(0, 3))
    buf.add(*batch(3, 3))  # wraps: 3 -> slot 3, 4 -> slot 0, 5 -> slot 1
    assert len(buf) == 4 and buf.position == 2
    np.testing.assert_array_equal(buf.storage["reward"], [4, 5, 2, 3])
    buf.add(*transition(6))
    np.testing.assert_array_equal(buf.storage["reward"], [4, 5, 6, 3])
    assert buf.position == 3 and len(buf) == 4


def test_sample_returns_batch_consistent_with_indices():
    buf = ReplayBuffer(100, seed=1)
    buf.add(*batch(0, 20))
    sample, indices = buf.sample(64)
    assert indices.shape == (64,)
    assert indices.min() >= 0 and indices.max() < 20  # only filled slots
    assert set(sample) == {"observation", "action", "reward", "next_observation", "terminated"}
    for name, values in sample.items():
        assert values.shape[0] == 64
        np.testing.assert_array_equal(values, buf.storage[name][indices])
    # Each sampled row is one intact transition.
    np.testing.assert_array_equal(sample["observation"][:, 0], sample["reward"])
    np.testing.assert_array_equal(sample["action"][:, 0], -sample["reward"])


def test_sample_is_seeded():
    a, b = ReplayBuffer(30, seed=5), ReplayBuffer(30, seed=5)
    a.add(*batch(0, 30))
    b.add(*batch(0, 30))
    np.testing.assert_array_equal(a.sample(10)[1], b.sample(10)[1])


def test_sample_errors():
    buf = ReplayBuffer(5)
    with pytest.raises(ValueError, match="empty"):
        buf.sample(1)
    buf.add(*transition(0))
    with pytest.raises(ValueError, match="capacity"):
        buf.sample(6)


def test_nbytes_counts_all_fields():
    buf = ReplayBuffer(100)
    buf.add(*transition(0, obs_dim=4, act_dim=2))
    # obs + next_obs: 2 * 4 float32, action: 2 float32, reward + terminated: 2 float32
    assert buf.nbytes == 100 * (2 * 4 * 4 + 2 * 4 + 4 + 4)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_reward_rejected_and_nothing_stored(bad):
    buf = ReplayBuffer(10)
    buf.add(*transition(0))
    obs, act, _, nxt, term = transition(1)
    with pytest.raises(ValueError, match="reward"):
        buf.add(obs, act, bad, nxt, term)
    rewards = np.array([1.0, bad, 2.0], dtype=np.float32)
    with pytest.raises(ValueError, match="reward"):
        buf.add(np.zeros((3, 3), np.float32), np.zeros((3, 2), np.float32), rewards,
                np.zeros((3, 3), np.float32), np.zeros(3))
    assert len(buf) == 1 and buf.position == 1


def test_nan_reward_on_first_add_leaves_buffer_empty():
    buf = ReplayBuffer(10)
    obs, act, _, nxt, term = transition(0)
    with pytest.raises(ValueError, match="reward"):
        buf.add(obs, act, float("nan"), nxt, term)
    assert len(buf) == 0 and buf.storage is None


def test_shape_mismatch_rejected():
    buf = ReplayBuffer(10)
    buf.add(*transition(0))
    with pytest.raises(ValueError, match="observation"):
        buf.add(*transition(1, obs_dim=4))
    with pytest.raises(ValueError, match="action"):
        buf.add(*transition(1, act_dim=3))
    # A batch whose fields disagree on the batch size.
    obs, act, rew, nxt, term = batch(0, 4)
    with pytest.raises(ValueError, match="action"):
        buf.add(obs, act[:3], rew, nxt, term)
    assert len(buf) == 1 and buf.position == 1
    np.testing.assert_array_equal(buf.storage["reward"][:1], [0.0])


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0)


# --------------------------------------------------------------- save / load
@pytest.mark.parametrize("n", [0, 3, 11])  # empty, partly filled, wrapped around
def test_save_load_round_trip(tmp_path, n):
    buf = ReplayBuffer(7, seed=3)
    if n:
        buf.add(*batch(0, n))
    buf.sample(5) if n else None  # advance the sampling generator
    path = tmp_path / "buffer.npz"
    buf.save(path)
    assert path.exists() and not list(tmp_path.glob("*.tmp*"))

    again = ReplayBuffer(7, seed=99).load(path)
    assert (again.position, again.size) == (buf.position, buf.size)
    assert again.rng.bit_generator.state == buf.rng.bit_generator.state
    if n:
        for name in buf.storage:
            assert again.storage[name].dtype == buf.storage[name].dtype
            np.testing.assert_array_equal(again.storage[name][: buf.size], buf.storage[name][: buf.size])
        # Same generator state and contents: the next samples agree.
        s1, i1 = buf.sample(6)
        s2, i2 = again.sample(6)
        np.testing.assert_array_equal(i1, i2)
        for name in s1:
            np.testing.assert_array_equal(s1[name], s2[name])
        # Adding continues at the saved position.
        buf.add(*transition(100))
        again.add(*transition(100))
        for name in buf.storage:
            np.testing.assert_array_equal(again.storage[name][: buf.size], buf.storage[name][: buf.size])


def test_load_corrupt_file_raises_value_error(tmp_path):
    path = tmp_path / "buffer.npz"
    path.write_bytes(b"this is not a numpy archive" * 10)
    buf = ReplayBuffer(5)
    with pytest.raises(ValueError, match="replay buffer"):
        buf.load(path)


def test_load_truncated_archive_raises_value_error(tmp_path):
    good = ReplayBuffer(5)
    good.add(*batch(0, 5))
    path = tmp_path / "buffer.npz"
    good.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="replay buffer"):
        ReplayBuffer(5).load(path)


def test_load_wrong_npz_raises_value_error(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.zeros(3))
    with pytest.raises(ValueError, match="not a kerasrl replay buffer"):
        ReplayBuffer(5).load(path)


def test_load_capacity_mismatch_raises_value_error(tmp_path):
    buf = ReplayBuffer(5)
    buf.add(*batch(0, 2))
    path = tmp_path / "buffer.npz"
    buf.save(path)
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(6).load(path)


def test_saved_file_is_plain_npz(tmp_path):
    buf = ReplayBuffer(5, seed=0)
    buf.add(*batch(0, 2))
    path = tmp_path / "buffer.npz"
    buf.save(path)
    assert zipfile.is_zipfile(path)
    with np.load(path) as data:  # no pickles: loads with allow_pickle=False
        assert int(data["size"]) == 2 and int(data["capacity"]) == 5
        assert json.loads(str(data["rng_state"]))["bit_generator"] == "PCG64"


# ------------------------------------------------------- property: indexing
adds = st.lists(
    st.one_of(st.just(0), st.integers(min_value=1, max_value=9)),  # 0: a single add, k: a batch of k
    min_size=1,
    max_size=12,
)


@given(capacity=st.integers(min_value=1, max_value=8), adds=adds)
def test_circular_indexing_matches_list_model(capacity, adds):
    buf = ReplayBuffer(capacity, seed=0)
    model: list[int] = []  # every transition id ever added, in order
    for k in adds:
        start = len(model)
        if k == 0:
            buf.add(*transition(start, 2, 1))
            model.append(start)
        else:
            buf.add(*batch(start, k, 2, 1))
            model.extend(range(start, start + k))
        kept = model[-capacity:]
        assert len(buf) == len(kept)
        assert buf.position == len(model) % capacity
        # Slot of transition number j is j % capacity.
        for j in kept:
            slot = j % capacity
            assert buf.storage["reward"][slot] == j
            np.testing.assert_array_equal(buf.storage["observation"][slot], [j, j])
            assert buf.storage["terminated"][slot] == float(j % 2 == 0)
        # Sampling returns only the kept transitions, intact.
        sample, indices = buf.sample(capacity)
        assert set(sample["reward"].astype(int)) <= set(kept)
        np.testing.assert_array_equal(sample["reward"], buf.storage["reward"][indices])
        np.testing.assert_array_equal(sample["next_observation"][:, 0], sample["reward"] + 0.5)
