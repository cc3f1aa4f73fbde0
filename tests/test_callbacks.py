"""kerasrl callbacks: target updates, EvalCallback, Checkpoint and resume."""

import json
import os

import gymnasium as gym
import keras
import numpy as np
import pytest

import kerasrl
from kerasrl import callbacks as rlcb
from support import make_data, make_sac, numpy_weights, weights_equal


def online_and_target(agent):
    """Concatenated weights of all online networks and of all their targets."""
    online, target = [], []
    for o, t in agent.target_pairs():
        online += numpy_weights(o)
        target += numpy_weights(t)
    return online, target


class TargetRecorder(keras.callbacks.Callback):
    """Records after every batch whether each target equals its online network."""

    def __init__(self):
        super().__init__()
        self.equal, self.targets = [], []

    def on_train_batch_end(self, batch, logs=None):
        online, target = online_and_target(self.model)
        self.equal.append(weights_equal(online, target))
        self.targets.append(target)


# ------------------------------------------------------------ target updates
def test_default_target_update_is_soft_with_agent_tau(pendulum):
    agent = make_sac(pendulum, tau=0.1)
    data = make_data(pendulum, agent)
    _, before = online_and_target(agent)
    agent.fit(data, epochs=1, steps_per_epoch=1, verbose=0)  # no target callback given
    online, after = online_and_target(agent)
    assert not weights_equal(before, after)  # the targets moved
    for o, b, a in zip(online, before, after):
        np.testing.assert_allclose(a, 0.1 * o + 0.9 * b, rtol=1e-5, atol=1e-6)
    assert float(agent.target_tau.numpy()) == pytest.approx(0.1) and int(agent.target_every.numpy()) == 1


def test_default_target_update_follows_target_update_interval(pendulum):
    agent = make_sac(pendulum, tau=1.0, target_update_interval=3)
    recorder = TargetRecorder()
    agent.fit(make_data(pendulum, agent), epochs=1, steps_per_epoch=6, verbose=0, callbacks=[recorder])
    assert recorder.equal == [False, False, True, False, False, True]


def test_soft_target_update_tau(pendulum):
    agent = make_sac(pendulum)
    data = make_data(pendulum, agent)
    _, before = online_and_target(agent)
    agent.fit(data, epochs=1, steps_per_epoch=1, verbose=0, callbacks=[rlcb.SoftTargetUpdate(tau=0.5)])
    online, after = online_and_target(agent)
    for o, b, a in zip(online, before, after):
        np.testing.assert_allclose(a, 0.5 * o + 0.5 * b, rtol=1e-5, atol=1e-6)


def test_soft_target_update_tau_one_copies(pendulum):
    agent = make_sac(pendulum)
    recorder = TargetRecorder()
    agent.fit(make_data(pendulum, agent), epochs=1, steps_per_epoch=4, verbose=0,
              callbacks=[rlcb.SoftTargetUpdate(tau=1.0), recorder])
    assert recorder.equal == [True] * 4


def test_hard_target_update_every_5_step_by_step(pendulum):
    agent = make_sac(pendulum)
    recorder = TargetRecorder()
    data = make_data(pendulum, agent)
    agent.fit(data, epochs=1, steps_per_epoch=13, verbose=0, callbacks=[rlcb.HardTargetUpdate(every=5), recorder])
    assert [i + 1 for i, eq in enumerate(recorder.equal) if eq] == [5, 10]
    # Between copies the targets stay frozen (targets[i] is after step i + 1).
    for i in range(5, 9):
        assert weights_equal(recorder.targets[i], recorder.targets[4])
    assert weights_equal(recorder.targets[12], recorder.targets[9])


@pytest.mark.parametrize("steps_per_execution", [1, 10])
def test_hard_target_update_after_exactly_10_steps(pendulum, steps_per_execution):
    agent = make_sac(pendulum, steps_per_execution=steps_per_execution)
    _, initial = online_and_target(agent)
    agent.fit(make_data(pendulum, agent), epochs=1, steps_per_epoch=10, verbose=0,
              callbacks=[rlcb.HardTargetUpdate(every=5)])
    assert int(agent.num_gradient_steps.numpy()) == 10
    online, target = online_and_target(agent)
    assert weights_equal(online, target)
    assert not weights_equal(initial, target)


def test_later_fit_without_callback_restores_default(pendulum):
    agent = make_sac(pendulum, tau=0.02)
    data = make_data(pendulum, agent)
    agent.fit(data, epochs=1, steps_per_epoch=2, verbose=0, callbacks=[rlcb.HardTargetUpdate(every=100)])
    assert float(agent.target_tau.numpy()) == 1.0 and int(agent.target_every.numpy()) == 100
    agent.fit(data, epochs=1, steps_per_epoch=2, verbose=0)
    assert float(agent.target_tau.numpy()) == pytest.approx(0.02) and int(agent.target_every.numpy()) == 1


@pytest.mark.parametrize("make", [
    lambda: rlcb.SoftTargetUpdate(tau=0.0),
    lambda: rlcb.SoftTargetUpdate(tau=1.5),
    lambda: rlcb.SoftTargetUpdate(tau=0.1, every=0),
    lambda: rlcb.HardTargetUpdate(every=0),
])
def test_target_update_rejects_bad_settings(make):
    with pytest.raises(ValueError, match="tau|every"):
        make()


# ------------------------------------------------------------- evaluation
def test_eval_callback_logs_eval_return(cartpole):
    agent = make_sac(cartpole)
    eval_env = gym.make("CartPole-v1")
    history = agent.fit(make_data(cartpole, agent), epochs=3, steps_per_epoch=5, verbose=0,
                        callbacks=[rlcb.EvalCallback(eval_env, every_epochs=2, episodes=2, seed=0)])
    returns = history.history["eval_return"]
    assert len(returns) == 3
    assert 1 <= returns[0] <= 500  # the first epoch is always evaluated
    assert 1 <= returns[1] <= 500 and returns[2] == returns[1]  # repeated between evaluations
    assert len(history.history["eval_return_std"]) == 3 and history.history["eval_return_std"][1] >= 0


def test_early_stopping_keeps_the_best_evaluated_weights_when_evaluations_are_epochs_apart(cartpole):
    agent = make_sac(cartpole)
    evaluations = []
    keep_best = keras.callbacks.EarlyStopping(monitor="eval_return", mode="max", patience=10,
                                              restore_best_weights=True)
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: evaluations.append(
        (logs["eval_return"], [np.copy(w) for w in agent.actor.get_weights()])))
    agent.fit(make_data(cartpole, agent), epochs=6, steps_per_epoch=20, verbose=0, callbacks=[
        rlcb.EvalCallback(gym.make("CartPole-v1"), every_epochs=3, episodes=2, seed=0), keep_best, record])
    assert np.all(np.isfinite([value for value, _ in evaluations]))
    best = max(range(len(evaluations)), key=lambda i: evaluations[i][0])  # the first of equal values
    assert keep_best.best == evaluations[best][0] and keep_best.best_epoch == best
    for restored, kept in zip(agent.actor.get_weights(), evaluations[best][1]):
        np.testing.assert_array_equal(restored, kept)


def test_a_nan_episode_return_before_the_first_episode_is_no_best(pendulum, tmp_path):
    # Pendulum's episodes are 200 steps: the epochs before the first one ends log a NaN episode_return.
    agent = make_sac(pendulum)
    kept = []
    keep_best = keras.callbacks.EarlyStopping(monitor="episode_return", mode="max", patience=2,
                                              restore_best_weights=True)
    save_best = keras.callbacks.ModelCheckpoint(str(tmp_path / "best-{epoch}.keras"), monitor="episode_return",
                                                mode="max", save_best_only=True)
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: kept.append([np.copy(w) for w in agent.actor.get_weights()]))
    history = agent.fit(make_data(pendulum, agent), epochs=8, steps_per_epoch=50, verbose=0,
                        callbacks=[keep_best, save_best, record])
    returns = history.history["episode_return"]
    first = int(np.flatnonzero(np.isfinite(returns))[0])
    assert first >= 2 and np.all(np.isnan(returns[:first]))
    assert keep_best.best_epoch >= first and keep_best.best == returns[keep_best.best_epoch]
    for restored, best in zip(agent.actor.get_weights(), kept[keep_best.best_epoch]):
        np.testing.assert_array_equal(restored, best)
    assert (tmp_path / f"best-{first + 1}.keras").exists()


def test_eval_callback_with_early_stopping(cartpole):
    agent = make_sac(cartpole)
    eval_cb = rlcb.EvalCallback("CartPole-v1", episodes=1, seed=0)
    # An improvement needs +1e9: the second evaluation never beats the first.
    stop = keras.callbacks.EarlyStopping(monitor="eval_return", mode="max", patience=0, min_delta=1e9,
                                         restore_best_weights=True)
    history = agent.fit(make_data(cartpole, agent), epochs=6, steps_per_epoch=3, verbose=0,
                        callbacks=[stop, eval_cb])  # order given does not matter
    assert history.epoch == [0, 1]
    assert stop.stopped_epoch == 1
    assert np.all(np.isfinite(history.history["eval_return"]))
    assert stop.best == history.history["eval_return"][0]


# ------------------------------------------------------------- checkpoints
def checkpoint_dirs(directory):
    return sorted(d for d in os.listdir(directory) if d.startswith("ckpt-"))


def test_checkpoint_and_resume(tmp_path):
    make_env = lambda: gym.make("Pendulum-v1", max_episode_steps=10)
    env = make_env()
    agent = make_sac(env)
    data = make_data(env, agent, learning_starts=20, batch_size=8)
    ckpt = rlcb.Checkpoint(tmp_path / "ckpt", every_steps=10, keep=2)
    agent.fit(data, epochs=2, steps_per_epoch=15, verbose=0, callbacks=[ckpt])

    names = checkpoint_dirs(tmp_path / "ckpt")
    assert len(names) == 2  # keep=2 pruned the older ones (30, 40, ...)
    steps = [int(n.split("-")[1]) for n in names]
    assert steps[0] >= 40 and steps[1] > steps[0]
    assert rlcb.latest_checkpoint(tmp_path / "ckpt").endswith(names[-1])
    assert not [d for d in os.listdir(tmp_path / "ckpt") if d.startswith(".tmp")]
    latest = tmp_path / "ckpt" / names[-1]
    assert {"agent.keras", "buffer.npz", "state.json"} <= set(os.listdir(latest))
    saved_steps = steps[-1]
    with open(latest / "state.json") as f:
        state = json.load(f)
    assert state["epoch"] == 2 and state["collector"]["env_steps"] == saved_steps

    again, data2 = kerasrl.resume(tmp_path / "ckpt", make_env())
    # Counters.
    assert data2.env_steps == saved_steps
    assert int(again.num_env_steps.numpy()) == saved_steps
    assert int(again.num_gradient_steps.numpy()) == int(agent.num_gradient_steps.numpy()) == 30
    assert data2.initial_epoch == 2
    assert data2.episodes == state["collector"]["episodes"] >= 4
    assert list(data2.recent_returns) == state["collector"]["recent_returns"]
    # Optimizer state and weights.
    for role in agent.optimizer_roles():
        opt, opt2 = getattr(agent, f"{role}_optimizer"), getattr(again, f"{role}_optimizer")
        assert int(opt2.iterations.numpy()) == int(opt.iterations.numpy()) == 30
        for v, v2 in zip(opt.variables, opt2.variables):
            np.testing.assert_array_equal(v.numpy(), v2.numpy())
    assert weights_equal(numpy_weights(agent.actor), numpy_weights(again.actor))
    assert weights_equal(numpy_weights(agent.critic1_target), numpy_weights(again.critic1_target))
    # Buffer contents (the training buffer may hold a prefetched step more).
    assert len(data2.buffer) == saved_steps and data2.buffer.capacity == data.buffer.capacity
    for name, values in data2.buffer.storage.items():
        np.testing.assert_array_equal(values[:saved_steps], data.buffer.storage[name][:saved_steps])
    # Dataset settings.
    assert (data2.batch_size, data2.learning_starts, data2.seed) == (8, 20, 0)

    # Training continues from there.
    history = again.fit(data2, epochs=3, steps_per_epoch=5, initial_epoch=data2.initial_epoch, verbose=0)
    assert history.epoch == [2]
    assert int(again.num_gradient_steps.numpy()) == 35
    assert history.history["env_steps"] == [float(saved_steps + 5)]
    assert len(data2.buffer) >= saved_steps + 5


def test_resume_by_recorded_env_id(tmp_path):
    env = gym.make("Pendulum-v1")
    agent = make_sac(env)
    data = make_data(env, agent, learning_starts=10, batch_size=4)
    agent.fit(data, epochs=1, steps_per_epoch=3, verbose=0,
              callbacks=[rlcb.Checkpoint(tmp_path, every_steps=1000, save_buffer=False)])
    names = checkpoint_dirs(tmp_path)
    assert len(names) == 1 and not os.path.exists(tmp_path / names[0] / "buffer.npz")
    again, data2 = kerasrl.resume(tmp_path)
    assert data2.env_id == "Pendulum-v1" and data2.env.single_observation_space.shape == (3,)
    assert len(data2.buffer) == 0 and data2.env_steps == int(names[0].split("-")[1])
    # Without a saved buffer the warm-up refills it before the first update.
    again.fit(data2, epochs=1, steps_per_epoch=2, verbose=0)
    assert len(data2.buffer) >= 10
    assert int(again.num_gradient_steps.numpy()) == 5


def test_resume_without_checkpoint_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        kerasrl.resume(tmp_path)


def test_checkpoint_rejects_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="every_steps"):
        rlcb.Checkpoint(tmp_path, every_steps=0)
    with pytest.raises(ValueError, match="keep"):
        rlcb.Checkpoint(tmp_path, keep=0)
