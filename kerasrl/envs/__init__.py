"""Environment builders and registrations.

* `make_atari` / `make_atari_env`: Atari with the usual DQN preprocessing.
* PyBullet locomotion: `import kerasrl` registers HalfCheetahBulletEnv-v0,
  AntBulletEnv-v0, HopperBulletEnv-v0, Walker2DBulletEnv-v0 and
  InvertedPendulumBulletEnv-v0 with gymnasium (`pip install "kerasrl[bullet]"`).
* `pomdp`: partially observed tasks (velocities removed, flickering, noise,
  missing sensors), e.g. `pomdp.make("Pendulum-v1", "remove_velocity")`.
"""

from kerasrl.envs import pomdp
from kerasrl.envs.atari import FireReset, make_atari, make_atari_env
from kerasrl.envs.bullet import BULLET_ENVS, BulletEnv, register_bullet_envs

register_bullet_envs()

__all__ = ["BULLET_ENVS", "BulletEnv", "FireReset", "make_atari", "make_atari_env", "pomdp",
           "register_bullet_envs"]
