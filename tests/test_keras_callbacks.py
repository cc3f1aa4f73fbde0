"""Keras' own callbacks on an agent's fit."""

import csv
import glob
import math
import os

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf

from support import InterruptAt, make_data, make_sac, numpy_weights, weights_equal


def test_tensorboard_writes_event_files(tmp_path, pendulum):
    agent = make_sac(pendulum)
    agent.fit(make_data(pendulum, agent), epochs=2, steps_per_epoch=5, verbose=0,
              callbacks=[keras.callbacks.TensorBoard(log_dir=str(tmp_path / "tb"))])
    files = glob.glob(str(tmp_path / "tb" / "train" / "events.out.tfevents.*"))
    assert files
    tags = set()
    for path in files:
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    assert {"epoch_critic_loss", "epoch_loss", "epoch_alpha"} <= tags


def test_csv_logger_columns(tmp_path, cartpole):
    agent = make_sac(cartpole)
    path = tmp_path / "log.csv"
    agent.fit(make_data(cartpole, agent), epochs=3, steps_per_epoch=5, verbose=0,
              callbacks=[keras.callbacks.CSVLogger(str(path))])
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    assert {"epoch", "episode_return", "episode_length", "env_steps", "critic_loss", "actor_loss",
            "alpha", "loss"} <= set(rows[0])
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert [float(r["env_steps"]) for r in rows] == [37.0, 42.0, 47.0]
    assert all(math.isfinite(float(r["critic_loss"])) for r in rows)
    assert math.isfinite(float(rows[-1]["episode_return"]))  # CartPole episodes end within the warm-up


def test_early_stopping_on_episode_return(cartpole):
    agent = make_sac(cartpole)
    stop = keras.callbacks.EarlyStopping(monitor="episode_return", mode="max", patience=0, min_delta=1e9)
    history = agent.fit(make_data(cartpole, agent), epochs=10, steps_per_epoch=3, verbose=0, callbacks=[stop])
    assert history.epoch == [0, 1] and stop.stopped_epoch == 1
    assert int(agent.num_gradient_steps.numpy()) == 6


def test_model_checkpoint_keras_file(tmp_path, pendulum):
    agent = make_sac(pendulum)
    pattern = str(tmp_path / "agent-{epoch:02d}.keras")
    agent.fit(make_data(pendulum, agent), epochs=2, steps_per_epoch=4, verbose=0,
              callbacks=[keras.callbacks.ModelCheckpoint(pattern)])
    assert sorted(os.listdir(tmp_path)) == ["agent-01.keras", "agent-02.keras"]
    first = keras.saving.load_model(tmp_path / "agent-01.keras")
    last = keras.saving.load_model(tmp_path / "agent-02.keras")
    assert type(last) is type(agent) and last.compiled
    assert int(first.num_gradient_steps.numpy()) == 4 and int(last.num_gradient_steps.numpy()) == 8
    obs, _ = pendulum.reset(seed=3)
    np.testing.assert_array_equal(last.act(obs, deterministic=True), agent.act(obs, deterministic=True))


def test_model_checkpoint_weights_only(tmp_path, pendulum):
    agent = make_sac(pendulum)
    path = str(tmp_path / "best.weights.h5")
    agent.fit(make_data(pendulum, agent), epochs=2, steps_per_epoch=4, verbose=0,
              callbacks=[keras.callbacks.ModelCheckpoint(path, save_weights_only=True)])
    fresh = make_sac(pendulum, seed=123)
    obs, _ = pendulum.reset(seed=3)
    before = fresh.act(obs, deterministic=True)  # builds the acting snapshot of the old weights
    fresh.load_weights(path)
    assert weights_equal(numpy_weights(fresh), numpy_weights(agent))
    after = fresh.act(obs, deterministic=True)
    np.testing.assert_array_equal(after, agent.act(obs, deterministic=True))
    assert not np.array_equal(before, after)


class EpochRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_backup_and_restore_resumes_at_the_right_epoch(tmp_path):
    backup = str(tmp_path / "backup")
    env = gym.make("Pendulum-v1")
    agent = make_sac(env)
    with pytest.raises(KeyboardInterrupt):
        agent.fit(make_data(env, agent), epochs=4, steps_per_epoch=5, verbose=0,
                  callbacks=[keras.callbacks.BackupAndRestore(backup), InterruptAt(2)])
    assert int(agent.num_gradient_steps.numpy()) == 10
    assert os.listdir(backup)
    saved_actor = numpy_weights(agent.actor)

    # A new process: a fresh agent, the same backup directory.
    env = gym.make("Pendulum-v1")
    fresh = make_sac(env, seed=7)
    recorder = EpochRecorder()
    history = fresh.fit(make_data(env, fresh), epochs=4, steps_per_epoch=5, verbose=0,
                        callbacks=[keras.callbacks.BackupAndRestore(backup), recorder])
    assert recorder.epochs == [2, 3] and history.epoch == [2, 3]
    # It resumed from the weights and counters saved after epoch 1 (10 steps), then did 10 more.
    assert int(fresh.num_gradient_steps.numpy()) == 20
    assert int(fresh.actor_optimizer.iterations.numpy()) == 20
    assert not weights_equal(numpy_weights(fresh.actor), saved_actor)  # trained on
    assert not os.path.exists(backup) or not os.listdir(backup)  # removed after a finished fit


def test_terminate_on_nan_with_finite_losses(pendulum):
    agent = make_sac(pendulum)
    history = agent.fit(make_data(pendulum, agent), epochs=2, steps_per_epoch=5, verbose=0,
                        callbacks=[keras.callbacks.TerminateOnNaN()])
    assert history.epoch == [0, 1] and int(agent.num_gradient_steps.numpy()) == 10


def test_terminate_on_nan_stops_on_infinite_loss(pendulum):
    # Rewards scaled to ~1e31 square to inf in the critic loss.
    agent = make_sac(pendulum, reward_scale=1e30)
    history = agent.fit(make_data(pendulum, agent), epochs=3, steps_per_epoch=5, verbose=0,
                        callbacks=[keras.callbacks.TerminateOnNaN()])
    assert int(agent.num_gradient_steps.numpy()) == 1
    assert len(history.epoch) == 1 and not np.isfinite(history.history["loss"][0])
