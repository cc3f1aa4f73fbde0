"""Shared fixtures of the kerasrl test suite.

Agents are small (hidden=(32, 32)) and compiled without XLA unless a test is
about the default compile, so the whole suite runs in a few minutes on 2 cores.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gymnasium as gym  # noqa: E402
import keras  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

import support  # noqa: E402

settings.register_profile("kerasrl", deadline=None, max_examples=60)
settings.load_profile("kerasrl")


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


@pytest.fixture
def pendulum():
    env = gym.make("Pendulum-v1")
    yield env
    env.close()


@pytest.fixture
def cartpole():
    env = gym.make("CartPole-v1")
    yield env
    env.close()


@pytest.fixture
def sac_pendulum(pendulum):
    """A compiled small SAC for Pendulum-v1 and its environment."""
    return support.make_sac(pendulum), pendulum


@pytest.fixture
def sac_cartpole(cartpole):
    """A compiled small discrete SAC for CartPole-v1 and its environment."""
    return support.make_sac(cartpole), cartpole


def pytest_configure(config):
    config.addinivalue_line("markers", "learning: short learning smoke tests (tens of seconds each)")
