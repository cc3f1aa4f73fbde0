"""Agent.play and `kerasrl play`: episodes shown or recorded to MP4/GIF, for every kind of agent and env."""

from __future__ import annotations

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image, ImageSequence

import kerasrl
from kerasrl import cli
from kerasrl.envs import pomdp
from support import HIDDEN, make_sac

PENDULUM_STEPS = 200


def frame_count(path, fps: int = 50) -> int:
    """Frames written; a GIF writer merges identical consecutive frames into one longer one."""
    if str(path).endswith(".gif"):
        with Image.open(path) as gif:
            total_ms = sum(frame.info["duration"] for frame in ImageSequence.Iterator(gif))
        return round(total_ms * fps / 1000)
    return sum(1 for _ in iio.imiter(path, plugin="FFMPEG"))


def test_play_records_every_frame_of_every_episode_and_returns_what_evaluate_env_returns(tmp_path, capsys):
    agent = make_sac(gym.make("Pendulum-v1"), compile=False)
    path = tmp_path / "pendulum.mp4"
    returns = agent.play(gym.make("Pendulum-v1", render_mode="rgb_array"), episodes=2, seed=0, video=str(path))
    np.testing.assert_array_equal(returns, agent.evaluate_env(gym.make("Pendulum-v1"), episodes=2, seed=0))
    # One frame after each reset and after each step; no frame of a third episode.
    assert frame_count(path) == 2 * (PENDULUM_STEPS + 1)
    printed = capsys.readouterr().out
    assert f"episode 1: return {returns[0]:.2f}, length {PENDULUM_STEPS}" in printed
    assert f"episode 2: return {returns[1]:.2f}, length {PENDULUM_STEPS}" in printed


def test_play_writes_a_gif_for_a_discrete_agent_at_the_fps_asked(tmp_path):
    env = gym.make("CartPole-v1", render_mode="rgb_array")
    agent = kerasrl.DQN.from_env(env, hidden=HIDDEN, seed=0)
    path = tmp_path / "cartpole.gif"
    returns = agent.play(env, episodes=1, seed=0, video=str(path), fps=25)
    assert frame_count(path, fps=25) == int(returns[0]) + 1  # CartPole: reward 1 per step


def test_play_runs_a_recurrent_agent_on_a_partially_observed_task(tmp_path):
    env = pomdp.make("Pendulum-v1", "remove_velocity", render_mode="rgb_array")
    agent = kerasrl.LSTMTD3.from_env(env, history_length=3, memory_hidden=(8,), lstm_units=8, feature_hidden=(8,),
                                     hidden=(8,), seed=0)
    path = tmp_path / "lstm.gif"
    returns = agent.play(env, episodes=1, seed=2, video=str(path), fps=50)
    expected = agent.evaluate_env(pomdp.make("Pendulum-v1", "remove_velocity"), episodes=1, seed=2)
    np.testing.assert_array_equal(returns, expected)
    assert frame_count(path) == PENDULUM_STEPS + 1


def test_play_says_when_the_env_cannot_render_the_way_asked(tmp_path):
    agent = make_sac(gym.make("Pendulum-v1"), compile=False)
    with pytest.raises(ValueError, match="render_mode='rgb_array' to record"):
        agent.play(gym.make("Pendulum-v1"), video=str(tmp_path / "a.mp4"))
    with pytest.raises(ValueError, match="render_mode='human' to show"):
        agent.play(gym.make("Pendulum-v1", render_mode="rgb_array"))
    with pytest.raises(ValueError, match="must end in .mp4 or .gif"):
        agent.play(gym.make("Pendulum-v1", render_mode="rgb_array"), video=str(tmp_path / "a.avi"))
    with pytest.raises(ValueError, match="does not exist"):
        agent.play(gym.make("Pendulum-v1", render_mode="rgb_array"), video=str(tmp_path / "no" / "a.gif"))
    with pytest.raises(ValueError, match="episodes >= 1"):
        agent.play(gym.make("Pendulum-v1", render_mode="rgb_array"), episodes=0, video=str(tmp_path / "a.gif"))
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_cli_play_records_a_saved_agent(tmp_path, capsys):
    agent = make_sac(gym.make("Pendulum-v1"))
    model = tmp_path / "agent.keras"
    agent.save(model)
    path = tmp_path / "pendulum.gif"
    result = cli.main(["play", str(model), "Pendulum-v1", "--episodes", "1", "--seed", "0", "--video", str(path),
                       "--fps", "50"])
    assert result == 0 and frame_count(path) == PENDULUM_STEPS + 1
    assert "episode 1: return" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["play", str(model), "Pendulum-v1", "--video", str(tmp_path / "x.avi")])
    assert exit_info.value.code == 2 and "must end in .mp4 or .gif" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["play", str(model), "CartPole-v1", "--video", str(tmp_path / "x.gif")])
    assert "observation space" in capsys.readouterr().err


def test_play_records_atari_and_bullet_episodes(tmp_path):
    atari = gym.wrappers.TimeLimit(
        kerasrl.envs.make_atari("BreakoutNoFrameskip-v4", training=False, render_mode="rgb_array"), 20)
    dqn = kerasrl.DQN.from_env(atari, torso="nature_cnn", seed=0)
    dqn.play(atari, seed=0, video=str(tmp_path / "breakout.mp4"))
    frames = iio.imread(tmp_path / "breakout.mp4", plugin="FFMPEG", index=None)
    assert frames.shape == (21, 210, 160, 3)
    bullet = gym.make("HalfCheetahBulletEnv-v0", render_mode="rgb_array", max_episode_steps=15)
    td3 = kerasrl.TD3.from_env(bullet, hidden=HIDDEN, seed=0)
    td3.play(bullet, seed=0, video=str(tmp_path / "cheetah.gif"), fps=50)
    assert frame_count(tmp_path / "cheetah.gif") == 16
    frames = iio.imread(tmp_path / "cheetah.gif", index=None)
    assert frames.shape[1:] == (240, 320, 3) and frames.std() > 0
