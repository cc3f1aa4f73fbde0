"""Hyperparameter search over kerasrl agents with keras-tuner (imported as `kerasrl.tuning`).

```python
import keras_tuner, kerasrl
from kerasrl import tuning

tuner = tuning.RLTuner(
    hypermodel=tuning.SACHyperModel(env_id="Pendulum-v1"),
    oracle=keras_tuner.oracles.BayesianOptimizationOracle(
        objective=keras_tuner.Objective("eval_return", "max"), max_trials=8),
    directory="tune", project_name="sac_pendulum")
tuner.search(env_steps=10_000, eval_episodes=5)
best_agent = tuner.get_best_models(1)[0]
```
"""

from kerasrl.tuning.hypermodels import (AgentHyperModel, DDPGHyperModel, DQNHyperModel, SACHyperModel,
                                        TD3HyperModel)
from kerasrl.tuning.tuner import OBJECTIVE, RLTuner

# Algorithm name -> hypermodel class (the CLI's `kerasrl tune ALGO`).
HYPERMODELS = {"sac": SACHyperModel, "dqn": DQNHyperModel, "td3": TD3HyperModel, "ddpg": DDPGHyperModel}

__all__ = ["OBJECTIVE", "AgentHyperModel", "DDPGHyperModel", "DQNHyperModel", "HYPERMODELS", "RLTuner", "SACHyperModel",
           "TD3HyperModel"]
