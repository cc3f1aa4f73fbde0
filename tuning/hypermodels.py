"""Search spaces of kerasrl agents as keras-tuner hypermodels.

Every hyperparameter has a name, so any of them can be fixed the keras-tuner
way: declare it in a `keras_tuner.HyperParameters` given to the oracle.

```python
hp = keras_tuner.HyperParameters()
hp.Fixed("gamma", 0.98)
hp.Fixed("width", 64)
oracle = keras_tuner.oracles.RandomSearchOracle(
    objective=keras_tuner.Objective("eval_return", "max"), max_trials=8, hyperparameters=hp)
```
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import keras
import keras_tuner
import numpy as np

import kerasrl
from kerasrl.agents.base import DEFAULT_STEPS_PER_EXECUTION, Agent
from kerasrl.agents.sac.sac import DISCRETE_ENTROPY_FRACTION


class AgentHyperModel(keras_tuner.HyperModel):
    """A keras-tuner HyperModel whose `build(hp)` returns a compiled kerasrl agent.

    The search space is split in two: `agent_hyperparameters(hp)` gives the
    agent's constructor arguments, `dataset_hyperparameters(hp, env_steps)`
    the `EnvDataset` ones (batch size, buffer, train_freq, exploration). Both
    are declared in `build`, so the oracle sees the whole space from the first
    trial. Subclasses set `agent_class` and add their own entries.

    Shared entries:
      * `learning_rate`: Adam learning rate of every network, log-uniform in
        [1e-4, 3e-3].
      * `batch_size`: 64, 128, 256 or 512.
      * `gamma`: 0.95, 0.98, 0.99 or 0.995.
      * `width`, `depth`: `depth` hidden layers of `width` units in every
        network (width 64-400, depth 1-3).
      * `buffer_size`: replay capacity, 10k, 100k or 1M transitions.
      * `train_freq`: env steps per round of updates, 1, 4, 8 or 16.
      * `gradient_steps`: updates per round, 1 or -1 (one per env step of
        the round, Stable-Baselines3's convention).
      * `learning_starts`: fixed at the constructor's value (random warm-up
        steps); fix another value through the oracle's HyperParameters.

    Args:
        env_id: the gymnasium environment id the agents are built for.
        learning_starts: random-action env steps before the first update.
        steps_per_execution: updates per compiled call (the agents' default, 50).
    """

    agent_class: type[Agent] = Agent
    default_width: int = 256

    def __init__(self, env_id: str, learning_starts: int = 1000,
                 steps_per_execution: int = DEFAULT_STEPS_PER_EXECUTION,
                 name: str | None = None, tunable: bool = True):
        super().__init__(name=name, tunable=tunable)
        self.env_id = env_id
        self.learning_starts = int(learning_starts)
        self.steps_per_execution = int(steps_per_execution)
        env = gym.make(env_id)
        self.observation_space, self.action_space = env.observation_space, env.action_space
        env.close()

    # ------------------------------------------------------------ the spaces
    def agent_hyperparameters(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        """Constructor arguments of the agent drawn from `hp`."""
        width = hp.Choice("width", [64, 128, 256, 400], default=self.default_width)
        depth = hp.Int("depth", 1, 3, default=2)
        return {"hidden": (width,) * depth, "gamma": hp.Choice("gamma", [0.95, 0.98, 0.99, 0.995], default=0.99)}

    def dataset_hyperparameters(self, hp: keras_tuner.HyperParameters, env_steps: int | None = None) -> dict[str, Any]:
        """EnvDataset arguments drawn from `hp`; `env_steps` is the search's budget (for schedules)."""
        return {
            "batch_size": hp.Choice("batch_size", [64, 128, 256, 512], default=256),
            "buffer": kerasrl.ReplayBuffer(hp.Choice("buffer_size", [10_000, 100_000, 1_000_000], default=1_000_000)),
            "train_freq": hp.Choice("train_freq", [1, 4, 8, 16], default=1),
            "gradient_steps": hp.Choice("gradient_steps", [1, -1], default=1),
            "learning_starts": hp.Fixed("learning_starts", self.learning_starts),
        }

    # --------------------------------------------------------- keras-tuner API
    def build(self, hp: keras_tuner.HyperParameters) -> Agent:
        """A compiled agent for the hyperparameters in `hp`.

        Its `seed` is drawn from numpy's global generator, which `RLTuner`
        seeds (with `keras.utils.set_random_seed`) before every build.
        """
        learning_rate = hp.Float("learning_rate", 1e-4, 3e-3, sampling="log", default=1e-3)
        kwargs = self.agent_hyperparameters(hp)
        self.dataset_hyperparameters(hp)  # declared now, so the oracle sees the whole space
        agent = self.agent_class(self.observation_space, self.action_space,
                                 seed=int(np.random.randint(2**31 - 1)), **kwargs)
        agent.compile(optimizer=keras.optimizers.Adam(learning_rate), steps_per_execution=self.steps_per_execution)
        return agent

    def make_dataset(self, hp: keras_tuner.HyperParameters, agent: Agent, env: Any, seed: int | None = None,
                     env_steps: int | None = None, **options: Any) -> kerasrl.EnvDataset:
        """The EnvDataset a trial trains `agent` on (`options`: further EnvDataset arguments)."""
        return kerasrl.EnvDataset(env, agent, seed=seed, **self.dataset_hyperparameters(hp, env_steps), **options)


class SACHyperModel(AgentHyperModel):
    """SAC's search space: the shared entries (width default 256), `tau`, and the entropy target.

      * `tau`: 0.005, 0.01, 0.02 or 0.05.
      * `target_entropy`: Box actions, uniform in [-2 dim(A), 0] (default
        -dim(A)); Discrete, uniform in [0.2 log n, 0.98 log n] (default
        0.6 log n, the agent's).

    Example:

    ```python
    hp = keras_tuner.HyperParameters()
    hp.Fixed("width", 64)
    agent = kerasrl.tuning.SACHyperModel("Pendulum-v1").build(hp)  # compiled; other entries at their defaults
    ```
    """

    agent_class = kerasrl.SAC

    def agent_hyperparameters(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        kwargs = super().agent_hyperparameters(hp)
        kwargs["tau"] = hp.Choice("tau", [0.005, 0.01, 0.02, 0.05], default=0.005)
        if isinstance(self.action_space, gym.spaces.Discrete):
            log_n = math.log(self.action_space.n)
            low, high, default = 0.2 * log_n, 0.98 * log_n, DISCRETE_ENTROPY_FRACTION * log_n
        else:
            dim = int(np.prod(self.action_space.shape))
            low, high, default = -2.0 * dim, 0.0, -float(dim)
        kwargs["target_entropy"] = hp.Float("target_entropy", low, high, default=default)
        return kwargs


class DQNHyperModel(AgentHyperModel):
    """DQN's search space: the shared entries (width default 64), hard target copies, and exploration.

      * `target_update_interval`: gradient steps between target copies, 100,
        250, 500 or 1000.
      * `exploration_fraction`: share of the search's `env_steps` over which
        epsilon falls linearly from 1, 0.05-0.5.
      * `exploration_final_eps`: epsilon at the end of that fall, 0.01, 0.05 or 0.1.
    """

    agent_class = kerasrl.DQN
    default_width = 64

    def agent_hyperparameters(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        kwargs = super().agent_hyperparameters(hp)
        kwargs["target_update_interval"] = hp.Choice("target_update_interval", [100, 250, 500, 1000], default=500)
        return kwargs

    def dataset_hyperparameters(self, hp: keras_tuner.HyperParameters, env_steps: int | None = None) -> dict[str, Any]:
        kwargs = super().dataset_hyperparameters(hp, env_steps)
        fraction = hp.Choice("exploration_fraction", [0.05, 0.1, 0.2, 0.5], default=0.1)
        final_eps = hp.Choice("exploration_final_eps", [0.01, 0.05, 0.1], default=0.05)
        if env_steps is not None:
            kwargs["exploration"] = kerasrl.schedules.Linear(1.0, final_eps, max(int(fraction * env_steps), 1))
        return kwargs


class TD3HyperModel(AgentHyperModel):
    """TD3's search space: the shared entries (width default 400), `tau`, and the exploration noise.

      * `tau`: 0.005, 0.01, 0.02 or 0.05.
      * `noise_type`: "normal" (Gaussian) or "ou" (Ornstein-Uhlenbeck).
      * `noise_std`: its sigma in [-1, 1] action units, 0.05-0.5.
    """

    agent_class = kerasrl.TD3
    default_width = 400

    def agent_hyperparameters(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        kwargs = super().agent_hyperparameters(hp)
        kwargs["tau"] = hp.Choice("tau", [0.005, 0.01, 0.02, 0.05], default=0.005)
        return kwargs

    def dataset_hyperparameters(self, hp: keras_tuner.HyperParameters, env_steps: int | None = None) -> dict[str, Any]:
        kwargs = super().dataset_hyperparameters(hp, env_steps)
        noise_type = hp.Choice("noise_type", ["normal", "ou"], default="normal")
        noise_std = hp.Choice("noise_std", [0.05, 0.1, 0.2, 0.3, 0.5], default=0.1)
        kwargs["action_noise"] = (kerasrl.noise.Gaussian(noise_std) if noise_type == "normal"
                                  else kerasrl.noise.OrnsteinUhlenbeck(sigma=noise_std))
        return kwargs


class LSTMTD3HyperModel(TD3HyperModel):
    """LSTM-TD3's search space: TD3's entries (width default 128, the paper's), and the memory.

      * `history_length`: past steps the networks see, 0 (no memory), 1, 3,
        5 or 8 (default 5); the replay buffer keeps histories of that length.
      * `lstm_units`: 64, 128 or 256 (default 128).
    """

    agent_class = kerasrl.LSTMTD3
    default_width = 128

    def agent_hyperparameters(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        kwargs = super().agent_hyperparameters(hp)
        width = kwargs["hidden"][0]
        kwargs.update(history_length=hp.Choice("history_length", [0, 1, 3, 5, 8], default=5),
                      lstm_units=hp.Choice("lstm_units", [64, 128, 256], default=128),
                      memory_hidden=(width,), feature_hidden=kwargs["hidden"], hidden=(width,))
        return kwargs

    def dataset_hyperparameters(self, hp: keras_tuner.HyperParameters, env_steps: int | None = None) -> dict[str, Any]:
        kwargs = super().dataset_hyperparameters(hp, env_steps)
        kwargs["buffer"] = kerasrl.ReplayBuffer(kwargs["buffer"].capacity,
                                                history_length=hp.get("history_length"))
        return kwargs


class DDPGHyperModel(TD3HyperModel):
    """DDPG's search space: the same entries as `TD3HyperModel`."""

    agent_class = kerasrl.DDPG


class OnPolicyHyperModel(AgentHyperModel):
    """The common search space of A2C and PPO (which learn from rollouts, not replay).

      * `learning_rate`: of the agent's own optimizer (Adam for PPO, RMSprop
        for A2C), log-uniform in [1e-5, 3e-3] (default 3e-4; A2C 7e-4).
      * `gamma`: 0.95, 0.98, 0.99, 0.995 or 0.999.
      * `gae_lambda`: 0.9, 0.95, 0.98, 0.99 or 1.0.
      * `ent_coef`: log-uniform in [1e-8, 0.1].
      * `width`, `depth`: the policy and value networks (width 64-256,
        default 64; depth 1-3, default 2).
      * `activation`: tanh or relu.

    The rollout settings (`n_steps`, `batch_size`, `n_epochs`) are the
    agent's hyperparameters here; the trial's dataset is a `RolloutDataset`.
    `learning_starts` does not apply.
    """

    default_width = 64
    default_learning_rate = 3e-4
    learning_rate_range = (1e-5, 3e-3)
    default_gae_lambda = 0.95

    def agent_hyperparameters(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        width = hp.Choice("width", [64, 128, 256], default=self.default_width)
        depth = hp.Int("depth", 1, 3, default=2)
        return {
            "hidden": (width,) * depth,
            "activation": hp.Choice("activation", ["tanh", "relu"], default="tanh"),
            "gamma": hp.Choice("gamma", [0.95, 0.98, 0.99, 0.995, 0.999], default=0.99),
            "gae_lambda": hp.Choice("gae_lambda", [0.9, 0.95, 0.98, 0.99, 1.0], default=self.default_gae_lambda),
            "ent_coef": hp.Float("ent_coef", 1e-8, 0.1, sampling="log", default=1e-8),
        }

    def dataset_hyperparameters(self, hp: keras_tuner.HyperParameters, env_steps: int | None = None) -> dict[str, Any]:
        return {}

    def build(self, hp: keras_tuner.HyperParameters) -> Agent:
        learning_rate = hp.Float("learning_rate", *self.learning_rate_range, sampling="log",
                                 default=self.default_learning_rate)
        agent = self.agent_class(self.observation_space, self.action_space,
                                 seed=int(np.random.randint(2**31 - 1)), **self.agent_hyperparameters(hp))
        optimizer = agent.default_optimizer()
        optimizer = type(optimizer).from_config({**optimizer.get_config(), "learning_rate": learning_rate})
        agent.compile(optimizer=optimizer, steps_per_execution=self.steps_per_execution)
        return agent

    def make_dataset(self, hp: keras_tuner.HyperParameters, agent: Agent, env: Any, seed: int | None = None,
                     env_steps: int | None = None, **options: Any) -> kerasrl.RolloutDataset:
        """The RolloutDataset a trial trains `agent` on (`options`: further RolloutDataset arguments)."""
        return kerasrl.RolloutDataset(env, agent, seed=seed, **options)


class PPOHyperModel(OnPolicyHyperModel):
    """PPO's search space: the on-policy entries, the rollout and the clip.

    Example:

    ```python
    hp = keras_tuner.HyperParameters()
    hp.Fixed("n_steps", 256)
    tuner = kerasrl.tuning.RLTuner(kerasrl.tuning.PPOHyperModel("CartPole-v1"),
                                   keras_tuner.oracles.RandomSearchOracle(
                                       objective=keras_tuner.Objective("eval_return", "max"), max_trials=4,
                                       hyperparameters=hp), directory="tune", project_name="ppo")
    tuner.search(env_steps=20_000)
    ```

      * `n_steps`: 256, 512, 1024 or 2048 (default 2048).
      * `batch_size`: 32, 64, 128 or 256 (default 64).
      * `n_epochs`: 3, 5, 10 or 20 (default 10).
      * `clip_range`: 0.1, 0.2 or 0.3 (default 0.2).
    """

    agent_class = kerasrl.PPO

    def agent_hyperparameters(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        kwargs = super().agent_hyperparameters(hp)
        kwargs.update(n_steps=hp.Choice("n_steps", [256, 512, 1024, 2048], default=2048),
                      batch_size=hp.Choice("batch_size", [32, 64, 128, 256], default=64),
                      n_epochs=hp.Choice("n_epochs", [3, 5, 10, 20], default=10),
                      clip_range=hp.Choice("clip_range", [0.1, 0.2, 0.3], default=0.2))
        return kwargs


class A2CHyperModel(OnPolicyHyperModel):
    """A2C's search space: the on-policy entries and `n_steps` (5, 8, 16 or 32; default 5)."""

    agent_class = kerasrl.A2C
    default_gae_lambda = 1.0
    default_learning_rate = 7e-4

    def agent_hyperparameters(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        kwargs = super().agent_hyperparameters(hp)
        kwargs["n_steps"] = hp.Choice("n_steps", [5, 8, 16, 32], default=5)
        return kwargs


class ActorCriticHyperModel(OnPolicyHyperModel):
    """The one-network actor-critic's search space (Keras' CartPole example).

      * `learning_rate`: of its Adam, log-uniform in [1e-4, 3e-2] (default 1e-2).
      * `gamma`: 0.95, 0.98, 0.99, 0.995 or 0.999 (default 0.99).
      * `width`, `depth`: the shared torso (width 32-256, default 128; depth
        1-2, default 1).
      * `normalize_returns`: returns normalised per batch or not (default True).

    A trial's dataset collects one whole episode per update, as in the
    example; the trial ends at its env-step budget.
    """

    agent_class = kerasrl.ActorCritic
    default_learning_rate = 1e-2
    learning_rate_range = (1e-4, 3e-2)

    def agent_hyperparameters(self, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
        width = hp.Choice("width", [32, 64, 128, 256], default=128)
        return {
            "hidden": (width,) * hp.Int("depth", 1, 2, default=1),
            "gamma": hp.Choice("gamma", [0.95, 0.98, 0.99, 0.995, 0.999], default=0.99),
            "normalize_returns": hp.Boolean("normalize_returns", default=True),
        }

    def make_dataset(self, hp: keras_tuner.HyperParameters, agent: Agent, env: Any, seed: int | None = None,
                     env_steps: int | None = None, **options: Any) -> kerasrl.RolloutDataset:
        return kerasrl.RolloutDataset(env, agent, seed=seed, **{"episodes_per_batch": 1, **options})
