"""Schedules: values, graph use, serialisation, and a schedule inside a saved agent."""

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasrl
from kerasrl import schedules
from support import make_data, make_sac


def value(schedule, step):
    return float(np.asarray(schedule(step)))


def test_constant():
    s = schedules.Constant(3)
    assert value(s, 0) == value(s, 10**9) == 3.0


def test_linear():
    s = schedules.Linear(1.0, 0.05, 10_000)
    assert value(s, 0) == pytest.approx(1.0)
    assert value(s, 5_000) == pytest.approx(0.525)
    assert value(s, 10_000) == pytest.approx(0.05)
    assert value(s, 20_000) == pytest.approx(0.05)


def test_piecewise():
    s = schedules.Piecewise([(0, 1.0), (10, 0.5), (20, 0.0)])
    for step, expected in [(-5, 1.0), (0, 1.0), (5, 0.75), (10, 0.5), (15, 0.25), (20, 0.0), (99, 0.0)]:
        assert value(s, step) == pytest.approx(expected), step
    late = schedules.Piecewise([(100, 2.0), (200, 4.0)])
    assert value(late, 50) == pytest.approx(2.0) and value(late, 150) == pytest.approx(3.0)


def test_exponential():
    s = schedules.Exponential(1.0, 0.5, steps=10)
    assert value(s, 0) == pytest.approx(1.0)
    assert value(s, 10) == pytest.approx(0.5)
    assert value(s, 25) == pytest.approx(0.5 ** 2.5)
    floored = schedules.Exponential(1.0, 0.5, steps=10, end=0.1)
    assert value(floored, 20) == pytest.approx(0.25) and value(floored, 100) == pytest.approx(0.1)


SCHEDULES = [
    schedules.Linear(1.0, 0.1, 100),
    schedules.Piecewise([(0, 1.0), (50, 0.2), (80, 0.3)]),
    schedules.Exponential(2.0, 0.9, steps=5, end=0.5),
    schedules.Exponential(2.0, 0.9),
]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: type(s).__name__)
def test_serialisation_round_trip(schedule):
    config = keras.saving.serialize_keras_object(schedule)
    again = keras.saving.deserialize_keras_object(config)
    assert type(again) is type(schedule) and again.get_config() == schedule.get_config()
    assert type(schedules.get(config)) is type(schedule)
    assert schedules.serialize(schedule) == config
    for step in (0, 7, 60, 1000):
        assert value(again, step) == pytest.approx(value(schedule, step))


@pytest.mark.parametrize("schedule", SCHEDULES + [schedules.Constant(0.5)], ids=lambda s: type(s).__name__)
def test_schedules_run_in_a_compiled_graph(schedule):
    step = tf.Variable(0, dtype=tf.int64)
    f = tf.function(lambda: tf.cast(schedule(step), tf.float32), jit_compile=True)
    for s in (0, 30, 90):
        step.assign(s)
        assert float(f()) == pytest.approx(value(schedule, s), rel=1e-5)  # float32 graph vs float64 numpy


def test_get_and_serialize_numbers():
    assert isinstance(schedules.get(2), schedules.Constant) and value(schedules.get(2), 5) == 2.0
    assert schedules.serialize(schedules.Constant(2.5)) == 2.5
    linear = schedules.Linear(1, 0, 10)
    assert schedules.get(linear) is linear


@pytest.mark.parametrize("make,match", [
    (lambda: schedules.Linear(1.0, 0.0, 0), "steps"),
    (lambda: schedules.Piecewise([]), "increasing"),
    (lambda: schedules.Piecewise([(10, 1.0), (5, 0.0)]), "increasing"),
    (lambda: schedules.get("fast"), "schedule"),
])
def test_bad_schedules(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_reward_scale_schedule_is_applied(pendulum):
    """The critic target on terminal transitions is reward_scale(step) * r."""
    agent = make_sac(pendulum, reward_scale=schedules.Linear(2.0, 0.0, 10))
    obs = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    actions = np.zeros((4, 1), np.float32)
    rewards = np.array([1.0, -1.0, 2.0, 0.5], np.float32)
    x = np.concatenate([obs, actions], axis=-1)
    q1 = np.asarray(agent.critic1(x))[:, 0]
    q2 = np.asarray(agent.critic2(x))[:, 0]
    agent.num_gradient_steps.assign(5)  # scale 1.0
    batch = {"observation": obs, "action": actions, "reward": rewards, "next_observation": obs,
             "terminated": np.ones(4, np.float32)}
    metrics = agent.update({k: keras.ops.convert_to_tensor(v) for k, v in batch.items()})
    expected = 0.5 * np.mean((q1 - rewards) ** 2) + 0.5 * np.mean((q2 - rewards) ** 2)
    assert float(metrics["critic_loss"]) == pytest.approx(expected, rel=1e-5)


def test_sac_reward_scale_schedule_round_trips_through_keras_file(tmp_path):
    env = gym.make("Pendulum-v1")
    schedule = schedules.Linear(1.0, 0.1, 1000)
    agent = make_sac(env, reward_scale=schedule)
    agent.fit(make_data(env, agent), epochs=1, steps_per_epoch=3, verbose=0)
    agent.save(tmp_path / "agent.keras")
    again = keras.saving.load_model(tmp_path / "agent.keras")
    assert isinstance(again, kerasrl.SAC)
    assert isinstance(again.reward_scale, schedules.Linear)
    assert again.reward_scale.get_config() == schedule.get_config()
    assert again.get_config()["reward_scale"] == agent.get_config()["reward_scale"]
    again.fit(make_data(env, again), epochs=1, steps_per_epoch=3, verbose=0)
    assert int(again.num_gradient_steps.numpy()) == 6
