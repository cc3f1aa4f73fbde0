"""Fast by default: an agent compiled as the README shows runs the benchmarks' setting."""

import gymnasium as gym
import keras
import pytest

import kerasrl
from kerasrl import cli
from kerasrl.tuning import SACHyperModel
from support import make_data


def test_compile_defaults_to_fifty_updates_per_call(tmp_path):
    env = gym.make("Pendulum-v1")
    agent = kerasrl.SAC.from_env(env, hidden=(8,), seed=0)
    agent.compile(optimizer=keras.optimizers.Adam(1e-3))
    assert agent.steps_per_execution == kerasrl.agents.base.DEFAULT_STEPS_PER_EXECUTION == 50
    # Epochs still take exactly steps_per_epoch updates when 50 does not divide them.
    data = make_data(env, agent, learning_starts=32)
    history = agent.fit(data, epochs=2, steps_per_epoch=30, verbose=0)
    assert int(agent.num_gradient_steps.numpy()) == 60 and history.history["env_steps"] == [62.0, 92.0]
    agent.save(tmp_path / "agent.keras")
    assert keras.saving.load_model(tmp_path / "agent.keras").steps_per_execution == 50


def test_an_explicit_steps_per_execution_wins():
    agent = kerasrl.DQN.from_env(gym.make("CartPole-v1"), hidden=(8,))
    agent.compile(optimizer=keras.optimizers.Adam(1e-3), steps_per_execution=1)
    assert agent.steps_per_execution == 1


def test_cli_and_tuner_take_the_default():
    args = cli.build_parser().parse_args(["train", "sac", "Pendulum-v1"])
    assert args.steps_per_execution == 50
    import keras_tuner

    agent = SACHyperModel("Pendulum-v1").build(keras_tuner.HyperParameters())
    assert agent.steps_per_execution == 50
