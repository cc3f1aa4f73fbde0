"""RLTuner: a keras-tuner Tuner whose trials train kerasrl agents on an environment."""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import shutil
from typing import Any, Iterator

import gymnasium as gym
import keras
import keras_tuner
import numpy as np

from kerasrl import callbacks as rlcb
from kerasrl.agents.base import Agent
from kerasrl.data import EnvDataset
from kerasrl.rollout import RolloutDataset
from kerasrl.training import EVAL_SEED_OFFSET, StopAtEnvSteps, fit_plan, plan_epochs, remaining_plan

OBJECTIVE = "eval_return"


class RLTuner(keras_tuner.Tuner):
    """Searches hyperparameters of a kerasrl agent with any keras-tuner oracle.

    A trial builds an agent with `hypermodel.build(hp)`, trains it with
    `agent.fit` over an `EnvDataset` for the search's `env_steps`, and scores
    it with `eval_return`: the mean undiscounted return of deterministic
    evaluation episodes on a fresh copy of the environment. The oracle's
    objective must be `keras_tuner.Objective("eval_return", "max")`.

    * Seeds: execution `k` of every trial uses seed `seed + k` (networks via
      `keras.utils.set_random_seed` before the build, environment, sampling,
      buffer), so trials differ by their hyperparameters only and
      `executions_per_trial` averages that many seeds. The hyperparameters
      a search draws follow the oracle's own `seed`; give it a non-zero one
      (keras-tuner reads `seed=0` as none). With
      `reproducible=True` (the default) collection and updates alternate in
      one thread (`steps_per_execution=1`, no prefetch, the policy copied
      before every collecting batch), so a trial rerun gives the same numbers;
      `reproducible=False` keeps the agent's and dataset's pipelining, about
      1.4x faster on a 2-core CPU, at the cost of thread-timing noise.
    * Files: each execution keeps a kerasrl checkpoint (agent, replay buffer,
      collector counters) in `trial_<id>/execution_<k>/`; the trial's best
      execution is saved as `trial_<id>/agent.keras`, which
      `get_best_models` loads (compiled); `resume_trial` gives an agent and
      its dataset (replay buffer included) to keep training.
    * Hyperband: a trial of `tuner/epochs` epochs trains
      `env_steps * tuner/epochs / max_epochs` env steps; a trial that
      Hyperband continues resumes its parent's checkpoint (optimizer state
      and replay buffer included) instead of starting over.
    * Interruptions: with `overwrite=False` (keras-tuner's default) a new
      tuner on the same folder reloads the search; finished trials are kept
      and an interrupted one resumes from its checkpoint (written every
      `checkpoint_every` env steps and at the end of training).

    Args:
        hypermodel: a `kerasrl.tuning.AgentHyperModel`, or any
            `keras_tuner.HyperModel` whose `build(hp)` returns a compiled
            agent. A `make_dataset(hp, agent, env, seed, env_steps, **options)`
            method, when the hypermodel has one, makes the trial's EnvDataset;
            otherwise it is `EnvDataset(env, agent, seed=seed)`.
        oracle: a keras-tuner oracle (RandomSearch, BayesianOptimization,
            Hyperband, ...).
        env: the environment id to train and evaluate on (default: the
            hypermodel's `env_id`).
        seed: seed of execution 0 of every trial.
        reproducible: run trials single-threaded so they repeat exactly.
        checkpoint_every: env steps between checkpoints during a trial
            (default: only at its end).
        **kwargs: keras-tuner Tuner arguments: `directory`, `project_name`,
            `overwrite`, `executions_per_trial`, `max_model_size`, ...

    Example:

    ```python
    tuner = kerasrl.tuning.RLTuner(
        hypermodel=kerasrl.tuning.SACHyperModel(env_id="Pendulum-v1"),
        oracle=keras_tuner.oracles.BayesianOptimizationOracle(
            objective=keras_tuner.Objective("eval_return", "max"), max_trials=8),
        directory="tune", project_name="sac_pendulum")
    tuner.search(env_steps=10_000, eval_episodes=5)
    best_agent = tuner.get_best_models(1)[0]
    ```
    """

    def __init__(self, hypermodel: keras_tuner.HyperModel, oracle: keras_tuner.Oracle, env: str | None = None,
                 seed: int = 0, reproducible: bool = True, checkpoint_every: int | None = None, **kwargs: Any):
        objective = getattr(oracle, "objective", None)
        if getattr(objective, "name", None) != OBJECTIVE:
            raise ValueError(f"RLTuner scores trials with {OBJECTIVE!r}; give the oracle "
                             f"objective=keras_tuner.Objective({OBJECTIVE!r}, 'max'), got {objective}.")
        self.env_id = env or getattr(hypermodel, "env_id", None)
        if not isinstance(self.env_id, str):
            raise ValueError("RLTuner needs an environment id: pass env= or a hypermodel with env_id.")
        gym.spec(self.env_id)  # an unknown id fails here, not in every trial
        if checkpoint_every is not None and int(checkpoint_every) < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}.")
        self.seed = int(seed)
        self.reproducible = bool(reproducible)
        self.checkpoint_every = checkpoint_every
        super().__init__(oracle=oracle, hypermodel=hypermodel, **kwargs)

    def search(self, env_steps: int, eval_episodes: int = 5, callbacks: list | None = None,
               steps_per_epoch: int = 1000, verbose: int = 1) -> None:
        """Runs trials until the oracle stops.

        Args:
            env_steps: env steps of a trial (warm-up included); with Hyperband,
                of a trial that runs `max_epochs`.
            eval_episodes: deterministic episodes that score a trial.
            callbacks: Keras callbacks for every trial's fit (deep-copied per
                execution; a TensorBoard log dir gets `<trial>/execution<k>`).
            steps_per_epoch: gradient steps per Keras epoch of a trial's fit.
            verbose: 0 silent, 1 trial summaries and progress bars, 2 one line per epoch.
        """
        if int(env_steps) < 1 or int(eval_episodes) < 1:
            raise ValueError(f"search needs env_steps >= 1 and eval_episodes >= 1, got {env_steps}, {eval_episodes}.")
        super().search(env_steps=int(env_steps), eval_episodes=int(eval_episodes), callbacks=callbacks or [],
                       steps_per_epoch=int(steps_per_epoch), verbose=verbose)

    # ------------------------------------------------------------------ trials
    def trial_env_steps(self, hp: keras_tuner.HyperParameters, env_steps: int) -> int:
        """The env-step budget of a trial: all of `env_steps`, or Hyperband's share of it."""
        if "tuner/epochs" not in hp.values:
            return env_steps
        return math.ceil(env_steps * hp.values["tuner/epochs"] / self.oracle.max_epochs)

    def run_trial(self, trial: keras_tuner.engine.trial.Trial, env_steps: int, eval_episodes: int = 5,
                  callbacks: list | None = None, steps_per_epoch: int = 1000, verbose: int = 1) -> dict:
        hp = trial.hyperparameters
        budget = self.trial_env_steps(hp, env_steps)
        scores, folders = [], []
        for execution in range(self.executions_per_trial):
            seed = self.seed + execution
            folder = self._execution_dir(trial.trial_id, execution)
            agent, data = self._start_execution(hp, execution, seed, env_steps, folder)
            trial_callbacks = self._deepcopy_callbacks(callbacks or [])
            self._configure_tensorboard_dir(trial_callbacks, trial, execution)
            checkpoint = rlcb.Checkpoint(folder, every_steps=self.checkpoint_every or budget, keep=1)
            if self.checkpoint_every:
                trial_callbacks.append(checkpoint)
            if isinstance(data, RolloutDataset) and data.n_steps is None:  # whole episodes: stop at the budget
                trial_callbacks.append(StopAtEnvSteps(data, budget))
            # The trial's whole plan; a resumed execution (or a Hyperband child) continues where it stands.
            epoch, plan = remaining_plan(plan_epochs(data.updates_for(budget, from_start=True), steps_per_epoch),
                                         int(agent.num_gradient_steps.numpy()))
            with self._pipeline(agent, data):
                fit_plan(agent, data, plan, epoch, trial_callbacks, verbose)
            checkpoint.set_model(agent)  # the final checkpoint, with the agent's own pipeline settings
            checkpoint.save(data, epoch + len(plan))
            data.close(env=True)
            env = gym.make(self.env_id)
            try:
                returns = agent.evaluate_env(env, episodes=eval_episodes, seed=seed + EVAL_SEED_OFFSET)
            finally:
                env.close()
            scores.append(float(np.mean(returns)))
            folders.append(rlcb.latest_checkpoint(folder))
            with open(os.path.join(folder, "eval.json"), "w") as f:
                json.dump({"seed": seed, "env_steps": data.env_steps, "returns": returns.tolist()}, f)
        best = folders[int(np.argmax(scores))]
        shutil.copyfile(os.path.join(best, "agent.keras"), self._agent_path(trial.trial_id))
        return {OBJECTIVE: float(np.mean(scores))}

    def _execution_dir(self, trial_id: str, execution: int) -> str:
        return os.path.join(self.get_trial_dir(trial_id), f"execution_{execution}")

    def _agent_path(self, trial_id: str) -> str:
        return os.path.join(self.get_trial_dir(trial_id), "agent.keras")

    def _start_execution(self, hp: keras_tuner.HyperParameters, execution: int, seed: int, env_steps: int,
                         folder: str) -> tuple[Agent, EnvDataset]:
        """Agent and dataset: from this execution's own checkpoint (an interrupted
        trial), from the Hyperband parent's, or new."""
        keras.backend.clear_session()
        gc.collect()
        parent = hp.values.get("tuner/trial_id")
        for source in (folder, parent and self._execution_dir(parent, execution)):
            if source and _has_checkpoint(source):
                agent, data = rlcb.resume(source, self.env_id)
                return agent, data
        keras.utils.set_random_seed(seed)
        agent = self._build_hypermodel(hp)
        if not isinstance(agent, Agent) or not agent.compiled:
            raise keras_tuner.errors.FatalTypeError(
                f"The hypermodel's build(hp) must return a compiled kerasrl agent, got {agent!r}.")
        size = sum(int(np.prod(w.shape)) for w in agent.trainable_weights)
        if self.max_model_size and size > self.max_model_size:
            raise keras_tuner.errors.FailedTrialError(f"Oversized model: {size} parameters. Skip model.")
        make_dataset = getattr(self.hypermodel, "make_dataset", None)
        if make_dataset is not None:
            data = make_dataset(hp, agent, self.env_id, seed=seed, env_steps=env_steps)
        else:
            data = EnvDataset(self.env_id, agent, seed=seed)
        return agent, data

    @contextlib.contextmanager
    def _pipeline(self, agent: Agent, data: EnvDataset) -> Iterator[None]:
        """Single-threaded collection and updates while a trial fits, when trials must repeat exactly.

        The agent's and dataset's own settings come back afterwards, so the
        saved agent and checkpoint keep them.
        """
        # A RolloutDataset collects nothing ahead and acts with the newest weights anyway.
        saved = agent.steps_per_execution, getattr(data, "prefetch", 0), getattr(data, "policy_sync_every", 1)
        if self.reproducible:
            agent.steps_per_execution = 1
            if isinstance(data, EnvDataset):
                data.prefetch, data.policy_sync_every = 0, 1
        try:
            yield
        finally:
            agent.steps_per_execution = saved[0]
            if isinstance(data, EnvDataset):
                data.prefetch, data.policy_sync_every = saved[1:]
            agent.train_function = None  # compiled for the trial's steps_per_execution

    def resume_trial(self, trial: keras_tuner.engine.trial.Trial, execution: int = 0) -> tuple[Agent, EnvDataset]:
        """`(agent, dataset)` of a finished trial's execution, to keep training it.

        The dataset holds the trial's replay buffer and counters, as
        `kerasrl.resume` gives them; fit with `initial_epoch=dataset.initial_epoch`.
        """
        return rlcb.resume(self._execution_dir(trial.trial_id, execution), self.env_id)

    # ------------------------------------------------------------------ models
    def save_model(self, trial_id: str, model: Agent, step: int = 0) -> None:
        model.save(self._agent_path(trial_id))

    def load_model(self, trial: keras_tuner.engine.trial.Trial) -> Agent:
        """The trial's trained agent, loaded (and compiled) from its .keras file."""
        path = self._agent_path(trial.trial_id)
        if not os.path.exists(path):
            raise FileNotFoundError(f"Trial {trial.trial_id} saved no agent ({path}); did it finish?")
        return keras.saving.load_model(path)


def _has_checkpoint(folder: str) -> bool:
    try:
        rlcb.latest_checkpoint(folder)
    except FileNotFoundError:
        return False
    return True
