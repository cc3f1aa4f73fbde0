"""RolloutDataset: fresh rollouts of the current policy, the data on-policy agents fit on.

Each rollout is collected with the agent's weights as they are when it starts
(nothing is collected ahead of the updates), turned into returns and
advantages by the agent (`kerasrl.returns`), and handed to fit as minibatches:
`n_epochs` passes over the rollout, each a new shuffle split into
`batch_size` samples (or the whole rollout as one batch). Each minibatch is
one `train_step`; the agent's train function fetches it from the dataset
(`OnPolicyAgent.make_train_function`).
"""

from __future__ import annotations

import collections
import threading
from typing import Any

import gymnasium as gym
import numpy as np
import tensorflow as tf

from kerasrl import acting, spaces
from kerasrl.data import make_env


class RolloutPolicy(acting.AgentPolicy):
    """The agent's stochastic policy, keeping what each step's choice needs for learning.

    After every `select`, `extras` holds the agent's per-row values of that
    step: the network input the policy saw (`input`), the value V(s) and
    log π(a|s), and for Box actions the sample before clipping to the bounds.
    """

    extras: dict[str, np.ndarray]

    def select(self, observation: np.ndarray, state: Any) -> np.ndarray:
        nets = self.agent.policy_snapshot() if self.nets is None else self.nets
        x = self.agent.network_input(nets, observation)
        actions, self.extras = self.agent._rollout_select(nets, x, self.rng)
        self.extras["input"] = x
        return actions


class RolloutDataset:
    """Minibatches from fresh rollouts of the agent's policy, for the agent's fit.

    Args:
        env: a gymnasium Env, a VectorEnv, or an environment id.
        agent: an on-policy agent (`kerasrl.ActorCritic`, ...).
        n_steps: steps per environment copy in each rollout.
        episodes_per_batch: instead of `n_steps`, collect until this many
            episodes have ended (whole episodes with one environment).
        batch_size: samples per minibatch (None: the whole rollout is one
            batch). When it does not divide the rollout, each pass leaves out
            the remainder, a different random part each pass.
        n_epochs: passes over each rollout.
        n_envs: copies of the environment when `env` is an id.
        vectorization_mode: "sync" or "async" for `n_envs > 1`.
        seed: seeds the environment's first reset, the policy's sampling and
            the shuffles.

    `n_steps`, `episodes_per_batch`, `batch_size` and `n_epochs` default to
    the agent's (`agent.rollout_defaults()`); give `n_steps` or
    `episodes_per_batch` here to choose the other kind of rollout.

    Without `steps_per_epoch`, one fit epoch is one rollout with all its
    passes; with it, an epoch is that many train steps, and a rollout carries
    on into the next epoch. The logs get `episode_return` (mean of the last
    10 finished episodes, NaN before the first), `episode_length` and
    `env_steps`. Returns bootstrap from V at a truncation and at the
    rollout's end, never through a termination.

    Example:

    ```python
    env = gym.make("CartPole-v1")
    agent = kerasrl.ActorCritic.from_env(env)
    agent.compile(optimizer=keras.optimizers.Adam(1e-2))
    agent.fit(kerasrl.RolloutDataset(env, agent, episodes_per_batch=1, seed=0), epochs=30, steps_per_epoch=20)
    ```
    """

    def __init__(
        self,
        env: Any,
        agent: Any,
        n_steps: int | None = None,
        episodes_per_batch: int | None = None,
        batch_size: int | None = None,
        n_epochs: int | None = None,
        n_envs: int = 1,
        vectorization_mode: str = "sync",
        seed: int | None = None,
    ):
        if not hasattr(agent, "_rollout_select"):
            raise ValueError(f"RolloutDataset needs an on-policy agent (ActorCritic, ...); {type(agent).__name__} "
                             "learns from replay: use EnvDataset.")
        defaults = agent.rollout_defaults()
        if n_steps is not None and episodes_per_batch is not None:
            raise ValueError("Give RolloutDataset either n_steps or episodes_per_batch, not both.")
        if n_steps is None and episodes_per_batch is None:
            n_steps, episodes_per_batch = defaults.get("n_steps"), defaults.get("episodes_per_batch")
        batch_size = defaults.get("batch_size") if batch_size is None else batch_size
        n_epochs = defaults.get("n_epochs", 1) if n_epochs is None else n_epochs
        for name, value in (("n_steps", n_steps), ("episodes_per_batch", episodes_per_batch),
                            ("batch_size", batch_size), ("n_epochs", n_epochs), ("n_envs", n_envs)):
            if value is not None and int(value) < 1:
                raise ValueError(f"RolloutDataset {name} must be >= 1, got {value}.")
        self.env_id = env if isinstance(env, str) else getattr(getattr(env, "spec", None), "id", None)
        env = make_env(env, n_envs, vectorization_mode)
        if not isinstance(env, (gym.Env, gym.vector.VectorEnv)):
            raise ValueError(f"RolloutDataset needs a gymnasium Env, VectorEnv or id, got {env!r}.")
        self.env = acting.vector_view(env)
        self.agent = agent
        for role, env_space, agent_space in (
            ("observation", self.env.single_observation_space, agent.observation_space),
            ("action", self.env.single_action_space, agent.action_space),
        ):
            if not spaces.same_spaces(env_space, agent_space):
                raise ValueError(f"The environment's {role} space {env_space!r} does not match the "
                                 f"agent's {agent_space!r}.")
        self.n_steps = None if n_steps is None else int(n_steps)
        self.episodes_per_batch = None if episodes_per_batch is None else int(episodes_per_batch)
        self.batch_size = None if batch_size is None else int(batch_size)
        self.n_epochs = int(n_epochs)
        self.n_envs = self.env.num_envs
        if self.n_steps is not None and self.batch_size is not None and self.batch_size > self.n_steps * self.n_envs:
            raise ValueError(f"batch_size {self.batch_size} is larger than a rollout of n_steps * n_envs = "
                             f"{self.n_steps * self.n_envs} samples.")
        self.vectorization_mode = vectorization_mode
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.policy = RolloutPolicy(agent, deterministic=False, rng=self.rng)
        self.loop = acting.EnvironmentLoop(self.env, self.policy)
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self.env_steps = 0
        self.episodes = 0
        self.rollouts = 0
        self.recent_returns: collections.deque = collections.deque(maxlen=10)
        self.recent_lengths: collections.deque = collections.deque(maxlen=10)
        self._discounted = np.zeros(self.n_envs)  # each copy's running discounted return (normalize_rewards)
        self._pending: list[dict[str, np.ndarray]] = []  # minibatches of the current rollout not yet trained on
        self._rollout_stats = self.stats()  # the logs of the minibatches of the current rollout
        self._reset_seed = seed
        self._fields_cache = self._fields()

    # --------------------------------------------------------------- collect
    def collect(self, weights: Any = None) -> dict[str, np.ndarray]:
        """One rollout with the current weights: (T, N) arrays, with the agent's targets.

        `weights`: the agent's `snapshot_variables` values, when the caller
        has read them. Rows that are no transition (a NEXT_STEP vector env's
        reset steps) have `valid` False; they end no return and are left out
        of training.
        """
        self.agent.refresh_policy(weights)
        if self.loop.observation is None:
            self.loop.reset(seed=self._reset_seed)
            self._reset_seed = None
        columns: dict[str, list] = collections.defaultdict(list)
        bootstrap: list[tuple[int, np.ndarray, np.ndarray]] = []  # (t, rows, observations) needing V(s')
        t, ended = 0, 0
        while (t < self.n_steps) if self.n_steps is not None else (ended < self.episodes_per_batch):
            step = self.loop.step()
            extras = self.policy.extras
            columns["observation"].append(extras["input"])  # the network input, as the policy saw it
            columns["action"].append(extras.get("raw_action", step.action))
            for name in ("reward", "terminated", "truncated", "valid"):
                columns[name].append(getattr(step, name))
            for name, value in extras.items():
                if name not in ("raw_action", "input"):
                    columns[name].append(value)
            if self.agent.normalize_observations:
                columns["raw_observation"].append(self.agent._preprocess_numpy(step.observation))
            truncated = np.flatnonzero(step.truncated & ~step.terminated & step.valid)
            if truncated.size:
                bootstrap.append((t, truncated, np.asarray(step.next_observation)[truncated]))
            self.env_steps += int(step.valid.sum())
            if step.episode_returns:
                ended += len(step.episode_returns)
                self.episodes += len(step.episode_returns)
                self.recent_returns.extend(step.episode_returns)
                self.recent_lengths.extend(step.episode_lengths)
            t += 1
        last_obs = self.loop.observation
        rollout = {name: np.stack(values) for name, values in columns.items()}
        valid = rollout["valid"]
        done = rollout["terminated"] | rollout["truncated"]
        # V(s'_t): the next row's value within an episode, V(final observation) at a truncation,
        # V(next observation) after the last step; nothing after a termination.
        next_values = np.zeros(valid.shape, np.float32)
        next_values[:-1] = rollout["value"][1:]
        open_rows = np.flatnonzero(~done[-1] & valid[-1])
        needed = [(len(valid) - 1, open_rows, np.asarray(last_obs)[open_rows])] + bootstrap
        observations = np.concatenate([obs for _, rows, obs in needed if rows.size] or [last_obs[:0]])
        if len(observations):
            nets = self.agent.policy_snapshot()
            values = self.agent._rollout_values(nets, self.agent.network_input(nets, observations))
            start = 0
            for t_row, rows, obs in needed:
                next_values[t_row, rows] = values[start:start + len(rows)]
                start += len(rows)
        next_values[done & ~rollout["truncated"]] = 0.0
        # Invalid rows: no reward, no value, and nothing bootstraps into them (the row before ended).
        rollout["terminated"] = rollout["terminated"] | ~valid
        for name in ("reward", "value"):
            rollout[name] = np.where(valid, rollout[name], 0.0)
        rollout["next_value"] = next_values
        self._normalize(rollout)
        rollout["rollout"] = np.full(valid.shape, self.rollouts, np.float32)  # which rollout a sample is from
        rollout.update(self.agent.rollout_targets(rollout))
        self.rollouts += 1
        return rollout

    def _normalize(self, rollout: dict[str, np.ndarray]) -> None:
        """Moves the agent's normalisation statistics by this rollout; rewards scaled for learning.

        The discounted return each environment copy has run up (reset where an
        episode ends, carried from rollout to rollout) is what rewards are
        scaled by, as in Stable-Baselines3's VecNormalize.
        """
        valid = rollout["valid"]
        returns_so_far = np.zeros(valid.shape)
        if self.agent.normalize_rewards:
            done = rollout["terminated"] | rollout["truncated"]
            for t in range(len(valid)):
                self._discounted = self._discounted * self.agent.gamma + rollout["reward"][t]
                returns_so_far[t] = self._discounted
                self._discounted[done[t]] = 0.0
        observations = rollout.pop("raw_observation", None)
        self.agent.update_statistics(observations[valid] if observations is not None else np.zeros((0,)),
                                     returns_so_far[valid])
        if self.agent.normalize_rewards:
            clip = self.agent.clip_rewards
            rollout["reward"] = np.clip(rollout["reward"] / self.agent.reward_scale(), -clip, clip)

    def minibatches(self, rollout: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        """The rollout's valid samples as `n_epochs` passes of shuffled minibatches."""
        valid = rollout["valid"].reshape(-1)
        samples = {name: rollout[name].reshape((-1,) + rollout[name].shape[2:])[valid]
                   for name in self.agent.rollout_fields()}
        count = int(valid.sum())
        if not count:
            return []
        if not self.batch_size:
            size, per_pass = count, 1
        elif self.n_steps:  # a fixed number of batches per rollout (see below)
            size, per_pass = self.batch_size, len(valid) // self.batch_size
        else:
            size = min(self.batch_size, count)
            per_pass = count // size
        batches = []
        for _ in range(self.n_epochs):
            order = self.rng.permutation(count) if self.batch_size else np.arange(count)
            if per_pass * size > count:
                # A NEXT_STEP vector env's reset steps are no transitions: other samples of the
                # rollout, drawn at random, fill their places, so every rollout gives as many batches.
                order = np.concatenate([order, self.rng.choice(count, per_pass * size - count)])
            for start in range(0, per_pass * size, size):
                rows = order[start:start + size]
                batches.append({name: value[rows] for name, value in samples.items()})
        return batches

    def batches_per_rollout(self) -> int | None:
        """Minibatches (train steps) each rollout gives; None when it varies (episodes in minibatches)."""
        if self.n_steps is None:
            return None if self.batch_size else self.n_epochs
        return self.n_epochs * (self.n_steps * self.n_envs // (self.batch_size or self.n_steps * self.n_envs))

    def fixed_batch_size(self) -> int | None:
        """The size of every minibatch when it cannot vary, else None (the train step is traced for it)."""
        if self.n_steps is None:
            return None
        if self.batch_size:
            return self.batch_size
        # One batch of the whole rollout: fixed unless a NEXT_STEP env spends steps on resets.
        next_step = getattr(self.env, "mode", None) == acting.AUTORESET.NEXT_STEP
        return None if next_step else self.n_steps * self.n_envs

    def updates_for(self, env_steps: int, from_start: bool = False) -> int:
        """Train steps of the rollouts that collect `env_steps` environment steps (the CLI's plan).

        Counted from the rollouts already collected, or with `from_start`,
        for the whole run. Rollouts of whole episodes have no fixed size: the
        bound of one pass per environment step is returned.
        """
        per_rollout = self.batches_per_rollout()
        if self.n_steps is None:
            return self.n_epochs * max(env_steps - (0 if from_start else self.env_steps), 0)
        rollouts = -(-env_steps // (self.n_steps * self.n_envs))  # the last rollout may go past env_steps
        return per_rollout * max(rollouts - (0 if from_start else self.rollouts), 0)

    def pop_pending(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """The next minibatch of the current rollout, packed (see `pack`); `ready` False when none is left.

        The train function calls it while the step before runs: it never
        collects, so it never acts with weights that step is still writing.
        """
        with self.lock:
            if self.error is not None:
                raise self.error
            if not self._pending:
                return np.zeros((0, 0)), np.zeros(3), False
            return self.pack(self._pending.pop()) + (True,)

    def next_rollout_batch(self, weights: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Collects a rollout with the current weights and returns its first minibatch, packed.

        The train function calls it only once the steps on every minibatch
        before have run, so the rollout acts with all their updates, and
        hands it the values of the agent's `snapshot_variables` it read then.
        """
        with self.lock:
            if self.error is not None:
                raise self.error
            try:
                while not self._pending:  # (a rollout of only reset steps gives none)
                    self._pending = self.minibatches(self.collect(weights))
                    self._pending.reverse()
                    self._rollout_stats = self.stats()  # (episodes end only in collect)
                return self.pack(self._pending.pop())
            except BaseException as error:
                self.error = error
                self.loop.observation = None  # the failed step left the episode mid-way: restart it
                raise

    def pack(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """A minibatch as one float64 (batch, width) array in `_fields` order, and its logs' statistics.

        One array crosses into the train function faster than one per field
        (each costs ~12 µs); float64 keeps actions and float32 values exact.
        """
        rows = len(batch["observation"])
        columns = [np.reshape(batch[name], (rows, -1)) for name, _, _ in self._fields_cache]
        stats = self._rollout_stats
        return (np.concatenate(columns, axis=1, dtype=np.float64),
                np.array([stats["episode_return"], stats["episode_length"], stats["env_steps"]], np.float64))

    def stats(self) -> dict[str, float]:
        """Episode statistics as they go into the logs."""
        nan = float("nan")
        return {
            "episode_return": float(np.mean(self.recent_returns)) if self.recent_returns else nan,
            "episode_length": float(np.mean(self.recent_lengths)) if self.recent_lengths else nan,
            "env_steps": self.env_steps,
        }

    def _fields(self) -> list[tuple[str, tf.DType, tuple]]:
        """The per-sample fields of a minibatch: name, dtype and shape, in packing order."""
        return rollout_fields(self.agent)

    def as_dataset(self, take: int | None = None) -> tf.data.Dataset:
        """What fit iterates: `take` tickets, one per train step (None: one rollout's, all its passes).

        The minibatches themselves do not go through tf.data: the agent's
        train function fetches them from this dataset (`pop_pending`,
        `next_rollout_batch`), one numpy call each.
        """
        if take is None:
            take = self.batches_per_rollout()
            if take is None:
                raise ValueError("Rollouts of whole episodes split into minibatches vary in length: give fit "
                                 "a steps_per_epoch, or batch_size=None (each pass one batch).")
        with self.lock:
            self.error = None
        return tf.data.Dataset.range(take)

    def close(self, env: bool = False) -> None:
        """Called by `Agent.fit` when it returns; `env=True` also closes the environment."""
        with self.lock:
            if env:
                self.env.env.close()

    def flush_priorities(self) -> None:  # what Checkpoint calls on any dataset
        pass

    def state(self) -> dict[str, Any]:
        """The collector's counters for a checkpoint (call holding `lock`).

        The minibatches of a rollout not yet trained on are not kept: a
        resumed run starts with a new rollout.
        """
        return {
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "rollouts": self.rollouts,
            "recent_returns": list(self.recent_returns),
            "recent_lengths": list(self.recent_lengths),
            "rng": self.rng.bit_generator.state,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.env_steps = int(state["env_steps"])
        self.episodes = int(state["episodes"])
        self.rollouts = int(state["rollouts"])
        self.recent_returns.extend(state["recent_returns"])
        self.recent_lengths.extend(state["recent_lengths"])
        self.rng.bit_generator.state = state["rng"]
        self._pending = []
        self._discounted[:] = 0.0
        self.loop.observation = None  # the environment restarts its episode
        if self.seed is not None:
            self._reset_seed = self.seed + self.env_steps

    def get_config(self) -> dict[str, Any]:
        return {
            "kind": "rollout",
            "env_id": self.env_id,
            "n_steps": self.n_steps,
            "episodes_per_batch": self.episodes_per_batch,
            "batch_size": self.batch_size,
            "n_epochs": self.n_epochs,
            "n_envs": self.n_envs,
            "vectorization_mode": self.vectorization_mode,
            "seed": self.seed,
        }


def rollout_fields(agent: Any) -> list[tuple[str, tf.DType, tuple]]:
    """An on-policy agent's minibatch fields (name, dtype, shape), in the order `RolloutDataset.pack` writes them."""
    fields = [("observation", tf.float32, (None, agent.obs_dim))]  # the network input
    action_shape = () if agent.discrete else tuple(agent.action_space.shape)
    fields.append(("action", tf.int64 if agent.discrete else tf.float32, (None,) + action_shape))
    return fields + [(name, tf.float32, (None,)) for name in agent.rollout_fields()
                     if name not in ("observation", "action")]
