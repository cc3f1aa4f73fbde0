"""PyBullet locomotion environments as gymnasium environments.

The pybullet package ships the robots and their environments in
`pybullet_envs`, written for the legacy `gym` API. Its package `__init__`
registers them with legacy gym and fails on import with modern gym (or
without gym). kerasrl imports only the modules that hold the environment
classes, without running that `__init__`, and with `gymnasium` standing in for
`gym` during the import, so their spaces are gymnasium spaces; `BulletEnv`
adapts the old reset/step API. Nothing needs patching and legacy gym is not
needed.

`import kerasrl` registers (1000-step limits, as in pybullet):

| id | robot env class |
|---|---|
| HalfCheetahBulletEnv-v0 | gym_locomotion_envs.HalfCheetahBulletEnv |
| AntBulletEnv-v0 | gym_locomotion_envs.AntBulletEnv |
| HopperBulletEnv-v0 | gym_locomotion_envs.HopperBulletEnv |
| Walker2DBulletEnv-v0 | gym_locomotion_envs.Walker2DBulletEnv |
| InvertedPendulumBulletEnv-v0 | gym_pendulum_envs.InvertedPendulumBulletEnv |

Example:

```python
import gymnasium as gym, kerasrl
env = gym.make("HalfCheetahBulletEnv-v0", render_mode="rgb_array")
obs, info = env.reset(seed=0)
frame = env.render()   # (240, 320, 3) uint8
```
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import types
from typing import Any, Iterator

import gymnasium as gym
import numpy as np

# id -> (robot env "module:Class" inside pybullet_envs, reward threshold)
BULLET_ENVS: dict[str, tuple[str, float]] = {
    "HalfCheetahBulletEnv-v0": ("gym_locomotion_envs:HalfCheetahBulletEnv", 3000.0),
    "AntBulletEnv-v0": ("gym_locomotion_envs:AntBulletEnv", 2500.0),
    "HopperBulletEnv-v0": ("gym_locomotion_envs:HopperBulletEnv", 2500.0),
    "Walker2DBulletEnv-v0": ("gym_locomotion_envs:Walker2DBulletEnv", 2500.0),
    "InvertedPendulumBulletEnv-v0": ("gym_pendulum_envs:InvertedPendulumBulletEnv", 950.0),
}
MAX_EPISODE_STEPS = 1000


def register_bullet_envs() -> None:
    """Registers the PyBullet environments with gymnasium (pybullet itself loads on `gym.make`)."""
    for env_id, (robot_env, threshold) in BULLET_ENVS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point="kerasrl.envs.bullet:BulletEnv", kwargs={"robot_env": robot_env},
                         max_episode_steps=MAX_EPISODE_STEPS, reward_threshold=threshold)


@contextlib.contextmanager
def _gymnasium_as_legacy_gym() -> Iterator[None]:
    """While pybullet_envs modules import: `gym` is gymnasium, `pybullet_envs` a bare package
    (its registering `__init__` not run) and `pkg_resources.parse_version` exists."""
    names = ("gym", "gym.spaces", "gym.utils", "gym.utils.seeding", "pkg_resources", "pybullet_envs")
    saved = {name: sys.modules.get(name) for name in names}
    sys.modules.update({"gym": gym, "gym.spaces": gym.spaces, "gym.utils": gym.utils,
                        "gym.utils.seeding": gym.utils.seeding})
    if saved["pkg_resources"] is None and importlib.util.find_spec("pkg_resources") is None:
        from packaging.version import parse  # setuptools >= 81 no longer ships pkg_resources

        sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse)
    if saved["pybullet_envs"] is None:
        spec = importlib.util.find_spec("pybullet_envs")
        if spec is None:
            raise gym.error.DependencyNotInstalled(
                'The PyBullet environments need pybullet: pip install "kerasrl[bullet]"')
        package = types.ModuleType("pybullet_envs")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["pybullet_envs"] = package
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _robot_env_class(robot_env: str) -> type:
    module_name, class_name = robot_env.split(":")
    module = sys.modules.get(f"pybullet_envs.{module_name}")
    if module is None:
        with _gymnasium_as_legacy_gym():
            module = importlib.import_module(f"pybullet_envs.{module_name}")
    return getattr(module, class_name)


class BulletEnv(gym.Env):
    """A pybullet_envs robot environment behind the gymnasium API.

    `reset(seed=)` seeds the robot's initial-state noise; `step` returns
    `terminated` from the robot (a fall) and never `truncated`: the
    1000-step limit is the registration's TimeLimit. `render_mode="rgb_array"`
    renders 320x240 frames from a camera following the robot (offscreen, so
    it works on headless machines; pybullet's GUI mode is not offered).

    Args:
        robot_env: "module:Class" of the environment inside pybullet_envs.
        render_mode: None or "rgb_array".
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 60}

    def __init__(self, robot_env: str, render_mode: str | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, "
                             f"got {render_mode!r}.")
        self.robot_env = robot_env
        self.render_mode = render_mode
        self.env = _robot_env_class(robot_env)()
        self.observation_space = self.env.observation_space
        self.action_space = self.env.action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self.env.seed(seed)
        obs = self.env.reset()
        return np.asarray(obs, dtype=np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, done, info = self.env.step(np.asarray(action, dtype=np.float32))
        return np.asarray(obs, dtype=np.float32), float(reward), bool(done), False, dict(info)

    def render(self) -> np.ndarray | None:
        return self.env.render(mode="rgb_array") if self.render_mode == "rgb_array" else None

    def close(self) -> None:
        self.env.close()
