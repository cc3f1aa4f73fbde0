"""kerasrl: reinforcement learning agents that are Keras 3 models.

```python
import gymnasium as gym, keras, kerasrl
env = gym.make("Pendulum-v1")
agent = kerasrl.SAC.from_env(env)
agent.compile(optimizer=keras.optimizers.Adam(1e-3))
agent.fit(kerasrl.EnvDataset(env, agent, learning_starts=1000), epochs=20, steps_per_epoch=1000)
agent.save("sac_pendulum.keras")
```
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kerasrl import _quiet  # noqa: E402

_quiet.import_tensorflow()

from kerasrl import noise, returns, schedules  # noqa: E402
from kerasrl.agents import A2C, DDPG, DQN, LSTMTD3, PPO, SAC, TD3, ActorCritic, Agent  # noqa: E402
from kerasrl.buffers import (  # noqa: E402
    FrameStackReplayBuffer, GeneticPriority, PrioritizedReplayBuffer, ReplayBuffer)
from kerasrl.data import EnvDataset  # noqa: E402
from kerasrl.rollout import RolloutDataset  # noqa: E402
from kerasrl import callbacks, envs  # noqa: E402
from kerasrl.callbacks import resume  # noqa: E402

__version__ = "0.1.0"
__all__ = ["A2C", "ActorCritic", "Agent", "DDPG", "DQN", "EnvDataset", "FrameStackReplayBuffer", "GeneticPriority", "LSTMTD3", "PPO",
           "PrioritizedReplayBuffer", "ReplayBuffer", "RolloutDataset", "SAC", "TD3", "callbacks", "envs", "noise", "resume", "returns", "schedules"]
