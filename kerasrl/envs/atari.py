"""Environment builders: Atari with the usual DQN preprocessing."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from kerasrl.data import AUTORESET


class FireReset(gym.Wrapper):
    """Presses FIRE after every reset, for games that wait for it (Breakout)."""

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(1)
        if terminated or truncated:
            obs, info = self.env.reset(**kwargs)
        return obs, info


def _register_ale() -> None:
    try:
        import ale_py
    except ImportError as error:
        raise ImportError('Atari environments need ale-py: pip install "kerasrl[atari]"') from error
    gym.register_envs(ale_py)


def make_atari_env(env_id: str, training: bool = True, frame_stack: int = 4, render_mode: str | None = None,
                   max_episode_steps: int = 27_000) -> gym.Env:
    """One preprocessed Atari environment; see `make_atari`."""
    _register_ale()
    env = gym.make(env_id, render_mode=render_mode, max_episode_steps=max_episode_steps * 4)
    if "NoFrameskip" not in env_id and env.unwrapped.get_wrapper_attr("_frameskip") != 1:
        raise ValueError(f"{env_id} skips frames itself; use the NoFrameskip-v4 id (AtariPreprocessing skips 4).")
    env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84,
                                          terminal_on_life_loss=training, grayscale_obs=True, scale_obs=False)
    if "FIRE" in env.unwrapped.get_action_meanings():
        env = FireReset(env)
    if training:
        env = gym.wrappers.TransformReward(env, lambda r: float(np.sign(r)))
    return gym.wrappers.FrameStackObservation(env, frame_stack)


def make_atari(env_id: str, n_envs: int = 1, training: bool = True, vectorization_mode: str = "sync",
               frame_stack: int = 4, render_mode: str | None = None) -> gym.Env | gym.vector.VectorEnv:
    """An Atari environment with DQN's preprocessing (Mnih et al. 2015).

    gymnasium's AtariPreprocessing (30 no-op starts, 4-frame max-pooled skip,
    84x84 grayscale uint8), FIRE pressed after each reset where the game needs
    it, then a stack of the last `frame_stack` frames: observations are
    `(4, 84, 84)` uint8. With `training=True` a lost life ends the episode
    (`terminated`) and rewards are clipped to their sign; evaluate with
    `training=False` for the game's real score.

    Args:
        env_id: a NoFrameskip-v4 id, e.g. "BreakoutNoFrameskip-v4".
        n_envs: copies in a gymnasium vector env (1: a plain env).
        training: life-loss terminals and reward clipping.
        vectorization_mode: "sync" or "async" (one process per copy).
        frame_stack: frames per observation.
        render_mode: passed to gymnasium.make (e.g. "rgb_array").

    Example:

    ```python
    env = kerasrl.envs.make_atari("BreakoutNoFrameskip-v4", n_envs=4)
    agent = kerasrl.DQN.from_env(env, torso="nature_cnn", dueling=True)
    ```
    """
    if n_envs == 1:
        return make_atari_env(env_id, training, frame_stack, render_mode)
    thunks = [lambda: make_atari_env(env_id, training, frame_stack, render_mode) for _ in range(n_envs)]
    vector = {"sync": gym.vector.SyncVectorEnv, "async": gym.vector.AsyncVectorEnv}[vectorization_mode]
    return vector(thunks, autoreset_mode=AUTORESET.SAME_STEP)
