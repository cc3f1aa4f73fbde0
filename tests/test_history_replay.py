"""History replay: the past L observations and actions of each sampled transition."""

from __future__ import annotations

import numpy as np
import pytest

import kerasrl

L = 3


def code(env: int, episode: int, t: int) -> float:
    """An observation that says where it comes from."""
    return 10_000 * env + 100 * episode + t


def fill(buffer: kerasrl.ReplayBuffer, lengths: dict[int, list[int]], truncate: bool = False) -> None:
    """Interleaves the environments' episodes step by step, as a vector env does.

    Observation = [code(env, episode, t)], action = [-code]; the last step of
    each episode ends it (terminated, or truncated with `truncate`).
    """
    plans = {env: [(k, t, t == n - 1) for k, n in enumerate(episodes) for t in range(n)]
             for env, episodes in lengths.items()}
    for i in range(max(len(p) for p in plans.values())):
        rows = [(env, *plan[i]) for env, plan in plans.items() if i < len(plan)]
        obs = np.array([[code(e, k, t)] for e, k, t, _ in rows], np.float32)
        ends = np.array([end for *_, end in rows])
        buffer.add(obs, -obs, np.ones(len(rows), np.float32), obs + 1,
                   ends & (not truncate), truncated=ends & truncate, env_ids=[e for e, *_ in rows])


def expected_window(value: float, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The history before the step coded `value`: (observations, mask), oldest first, zeros in front."""
    t = int(value) % 100
    steps = [value - d for d in range(min(t, length), 0, -1)]
    obs = np.zeros(length, np.float32)
    mask = np.zeros(length, bool)
    if steps:
        obs[-len(steps):] = steps
        mask[-len(steps):] = True
    return obs, mask


def check_batch(batch: dict[str, np.ndarray], length: int = L) -> None:
    for row, value in enumerate(batch["observation"][:, 0]):
        obs, mask = expected_window(value, length)
        np.testing.assert_array_equal(batch["history_observation"][row, :, 0], obs)
        np.testing.assert_array_equal(batch["history_action"][row, :, 0], -obs)
        np.testing.assert_array_equal(batch["history_mask"][row], mask)
        # The window before t+m (next_observation = s_{t+m}; m = 1 with 1-step returns) ends with step t+m-1.
        next_obs, next_mask = expected_window(batch["next_observation"][row, 0], length)
        np.testing.assert_array_equal(batch["next_history_observation"][row, :, 0], next_obs)
        np.testing.assert_array_equal(batch["next_history_action"][row, :, 0], -next_obs)
        np.testing.assert_array_equal(batch["next_history_mask"][row], next_mask)


@pytest.mark.parametrize("n_step", [1, 3])
@pytest.mark.parametrize("truncate", [False, True])
def test_histories_stop_at_episode_starts_and_never_mix_environments(truncate, n_step):
    buffer = kerasrl.ReplayBuffer(1000, history_length=L, seed=0, n_step=n_step, gamma=0.5)
    fill(buffer, {0: [2, 7, 1, 5], 1: [4, 4, 9], 2: [12]}, truncate=truncate)
    assert len(buffer) == 2 + 7 + 1 + 5 + 4 + 4 + 9 + 12  # every step became a transition
    batch, _ = buffer.sample(500)
    assert batch["history_observation"].shape == (500, L, 1) and batch["history_mask"].dtype == bool
    assert not {"prev", "step", "last_step"} & set(batch)
    check_batch(batch)
    firsts = batch["observation"][:, 0] % 100 == 0
    assert firsts.any() and not batch["history_mask"][firsts].any()  # an episode's first step: empty history
    assert batch["history_mask"].all(axis=1).any()  # and full windows deep in an episode
    span = np.rint(batch["next_observation"][:, 0] - batch["observation"][:, 0]).astype(int)  # m
    np.testing.assert_allclose(batch["discount"] if n_step > 1 else 1.0, 0.5 ** span if n_step > 1 else 1.0)
    assert set(span) == set(range(1, n_step + 1))  # windows of n steps, shorter ones at episode ends
    for m in range(1, n_step + 1):  # the next window holds min(t + m, L) steps of the episode
        rows = (span == m) & (batch["observation"][:, 0] % 100 == 0)
        assert np.all(batch["next_history_mask"][rows].sum(axis=1) == min(m, L))


def test_n_step_histories_of_a_running_episode_reach_its_pending_steps():
    buffer = kerasrl.ReplayBuffer(100, history_length=L, n_step=3, gamma=0.9)
    for t in range(10):  # one episode, not ended: steps 8 and 9 are still pending in the window
        obs = np.array([[code(0, 0, t)]], np.float32)
        buffer.add(obs, -obs, [1.0], obs + 1, [False])
    assert len(buffer) == 8
    batch = buffer._gather(np.arange(8))
    check_batch(batch)
    np.testing.assert_array_equal(batch["next_history_observation"][-1, :, 0], [7, 8, 9])


def test_the_step_ring_keeps_the_whole_history_of_the_oldest_held_transition():
    buffer = kerasrl.ReplayBuffer(10, history_length=L, n_step=2, gamma=0.9)
    fill(buffer, {0: [40], 1: [25, 15]})  # the step ring holds 10 + (1 + 3) * 2 = 18 steps
    batch = buffer._gather(np.arange(10))
    assert len(set(batch["observation"][:, 0])) == 10
    check_batch(batch)  # whole windows, though most of these episodes' steps were overwritten
    assert batch["history_mask"].all()


def test_history_length_one_and_windows_longer_than_episodes():
    for length in (1, 20):
        buffer = kerasrl.ReplayBuffer(200, history_length=length, seed=1)
        fill(buffer, {0: [3, 6], 1: [5]})
        check_batch(buffer.sample(100)[0], length)


def test_overwritten_steps_shorten_the_history():
    buffer = kerasrl.ReplayBuffer(10, history_length=L, seed=0)
    fill(buffer, {0: [25]})  # one long episode; the ring holds steps 15..24
    batch = buffer._gather(np.arange(10))  # every held step (a batch may not exceed the capacity)
    t = batch["observation"][:, 0].astype(int) % 100
    assert set(t) == set(range(15, 25))
    held = batch["history_mask"].sum(axis=1)
    np.testing.assert_array_equal(held, np.minimum(t - 15, L))  # nothing from before the oldest held step
    assert np.all(batch["history_observation"][~batch["history_mask"]] == 0)


@pytest.mark.parametrize("n_step", [1, 3])
def test_prioritized_buffers_give_histories_of_the_sampled_indices(n_step):
    buffer = kerasrl.PrioritizedReplayBuffer(1000, history_length=L, seed=0, n_step=n_step, gamma=0.9)
    fill(buffer, {0: [6, 8], 1: [3, 10]})
    buffer.update_priorities(np.arange(len(buffer)), np.linspace(0.1, 5, len(buffer)))
    batch, indices = buffer.sample(300)
    check_batch(batch)
    np.testing.assert_array_equal(batch["observation"], buffer.storage["observation"][indices])
    assert "prev" not in batch and "weight" in batch


@pytest.mark.parametrize("cls", [kerasrl.ReplayBuffer, kerasrl.PrioritizedReplayBuffer])
@pytest.mark.parametrize("n_step", [1, 3])
def test_save_and_load_keep_histories_and_restart_running_episodes(tmp_path, n_step, cls):
    buffer = cls(1000, history_length=L, seed=0, n_step=n_step, gamma=0.9)
    start = code(3, 0, 0)  # a one-step episode of a fourth copy
    buffer.add(np.array([[start]]), np.array([[-start]]), [0.0], np.array([[start + 1]]), [True], env_ids=[3])
    fill(buffer, {0: [4, 6], 1: [7]})
    buffer.save(tmp_path / "buffer.npz")
    again = cls(1000, history_length=L, seed=0, n_step=n_step, gamma=0.9).load(tmp_path / "buffer.npz")
    first, second = buffer.sample(100)[0], again.sample(100)[0]
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    check_batch(second)
    # After a load (or an interrupted run) the next step starts a new episode: no link to what came before.
    for t in range(n_step):
        again.add(np.array([[7.0 + t]]), np.array([[-7.0 - t]]), [0.0], np.array([[8.0 + t]]), [False])
    newest = again._gather(np.array([len(again) - 1]))
    assert not newest["history_mask"].any()
    with pytest.raises(ValueError, match="history_length=3"):
        kerasrl.ReplayBuffer(1000, history_length=L, n_step=n_step, gamma=0.9).load(
            _saved_without_history(tmp_path, n_step))


def test_a_file_without_its_step_ring_is_named(tmp_path):
    buffer = kerasrl.ReplayBuffer(100, history_length=L, n_step=3, gamma=0.9)
    fill(buffer, {0: [6]})
    buffer.save(tmp_path / "buffer.npz")
    with np.load(tmp_path / "buffer.npz") as data:
        content = {key: data[key] for key in data.files if key != "step_prev"}
    np.savez(tmp_path / "damaged.npz", **content)
    again = kerasrl.ReplayBuffer(100, history_length=L, n_step=3, gamma=0.9)
    with pytest.raises(ValueError, match="no valid step ring"):
        again.load(tmp_path / "damaged.npz")
    assert len(again) == 0  # nothing half-loaded


def _saved_without_history(tmp_path, n_step: int = 1) -> str:
    plain = kerasrl.ReplayBuffer(1000, n_step=n_step, gamma=0.9)
    fill(plain, {0: [3]})
    plain.save(tmp_path / "plain.npz")
    return str(tmp_path / "plain.npz")


def test_bad_history_settings_are_named():
    with pytest.raises(ValueError, match="history_length must be >= 0"):
        kerasrl.ReplayBuffer(10, history_length=-1)
    with pytest.raises(ValueError, match="needs a whole number n_step"):
        kerasrl.ReplayBuffer(10, n_step="episode", history_length=2)
    assert kerasrl.ReplayBuffer(10, history_length=4).get_config()["history_length"] == 4
