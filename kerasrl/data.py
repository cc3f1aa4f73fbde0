"""EnvDataset: the tf.data pipeline `agent.fit` consumes.

Each element is one replay batch. Producing it steps the environment
`train_freq` times with the agent's current policy (uniform random actions
until `learning_starts` transitions are stored), stores the transitions in the
replay buffer and samples a batch; with `gradient_steps=k`, k batches follow
each round of collection.

Collection runs in a tf.data thread through `tf.numpy_function`, serialised by
a lock so callbacks on the main thread (checkpoints, evaluation) see a
consistent buffer and counters.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import tensorflow as tf

from kerasrl import acting, schedules, spaces
from kerasrl import noise as noise_module
from kerasrl.acting import AUTORESET
from kerasrl.buffers import ReplayBuffer

MAX_CHUNK = 64  # batches per hand-over to the update, at most


def make_env(env: Any, n_envs: int = 1, vectorization_mode: str = "sync") -> gym.Env | gym.vector.VectorEnv:
    """An environment from an id (a vector env when n_envs > 1), or `env` as given."""
    if isinstance(env, str):
        if n_envs == 1:
            return gym.make(env)
        return gym.make_vec(env, num_envs=n_envs, vectorization_mode=vectorization_mode,
                            vector_kwargs={"autoreset_mode": AUTORESET.SAME_STEP})
    return env


class EnvDataset:
    """A tf.data pipeline of replay batches collected by the agent's own policy.

    Args:
        env: a gymnasium Env, a VectorEnv, or an environment id.
        agent: the agent whose policy collects the data.
        buffer: the replay buffer (a new `ReplayBuffer(1_000_000)` by default).
        batch_size: transitions per batch.
        learning_starts: env steps with uniform random actions before the
            first batch.
        train_freq: vector-env steps collected before each round of updates.
        gradient_steps: batches (gradient steps) per round; -1 (as in
            Stable-Baselines3): as many as env steps the round collected
            (`train_freq * n_envs`).
        n_envs: copies of the environment when `env` is an id.
        vectorization_mode: "sync" or "async" for `n_envs > 1`.
        exploration: a schedule of env steps (or a float) giving the epsilon
            of epsilon-greedy exploration around the policy's mode, for
            Discrete actions (`kerasrl.acting.EpsilonGreedy`); by default the
            agent's `default_exploration()` (DQN's). Its current value is
            logged as `exploration_rate`.
        action_noise: `kerasrl.noise` added to the actions, for Box actions
            (`kerasrl.acting.NoisyActions`): one process per environment copy,
            restarted when its episode ends; by default the agent's
            `default_action_noise()` (Gaussian(0.1) for DDPG and TD3, which
            are explored around their deterministic policy).
        seed: seeds the environment, the random warm-up actions, the policy's
            sampling and the buffer's sampling.
        prefetch: chunks of batches prepared ahead of the update (0: collect
            on demand). A chunk is up to `max(gradient_steps,
            policy_sync_every)` batches, at most 64 (see `as_dataset`).
        policy_sync_every: batches between copies of the policy weights into
            the acting snapshot. A copy of 256x256 networks costs ~60 µs of
            bare variable reads on an idle machine, several times that beside
            a running update, which it slows; measured on SAC Pendulum-v1 (2
            cores, when a copy still cost ~200 µs): 146 updates/s at 1, 165 at
            2, 197 at 4, against a ceiling of 204. Off-policy learning is
            insensitive to a policy a few updates old; set 1 for the freshest
            policy. It also bounds how many batches are collected ahead in one
            chunk.

    The logs of `fit` get `episode_return` (mean of the last 10 finished
    episodes, NaN before the first), `episode_length` and `env_steps`.

    Example:

    ```python
    data = kerasrl.EnvDataset(gym.make("Pendulum-v1"), agent,
                              buffer=kerasrl.ReplayBuffer(100_000),
                              batch_size=256, learning_starts=1000, seed=0)
    agent.fit(data, epochs=20, steps_per_epoch=1000)
    ```
    """

    def __init__(
        self,
        env: Any,
        agent: Any,
        buffer: ReplayBuffer | None = None,
        batch_size: int = 256,
        learning_starts: int = 100,
        train_freq: int = 1,
        gradient_steps: int = 1,
        n_envs: int = 1,
        vectorization_mode: str = "sync",
        exploration: schedules.Schedule | float | None = None,
        action_noise: noise_module.ActionNoise | None = None,
        seed: int | None = None,
        prefetch: int = 1,
        policy_sync_every: int = 4,
    ):
        for name, value in (("batch_size", batch_size), ("train_freq", train_freq), ("n_envs", n_envs)):
            if int(value) < 1:
                raise ValueError(f"EnvDataset {name} must be >= 1, got {value}.")
        if int(gradient_steps) < 1 and gradient_steps != -1:
            raise ValueError(f"EnvDataset gradient_steps must be >= 1 or -1 (one per env step), got {gradient_steps}.")
        if learning_starts < 0:
            raise ValueError(f"EnvDataset learning_starts must be >= 0, got {learning_starts}.")
        self.env_id = env if isinstance(env, str) else getattr(getattr(env, "spec", None), "id", None)
        env = make_env(env, n_envs, vectorization_mode)
        if not isinstance(env, (gym.Env, gym.vector.VectorEnv)):
            raise ValueError(f"EnvDataset needs a gymnasium Env, VectorEnv or id, got {env!r}.")
        self.env = acting.vector_view(env)
        self.agent = agent
        self._check_spaces()
        history = agent.history_length
        self.buffer = buffer if buffer is not None else ReplayBuffer(1_000_000, seed=seed, history_length=history)
        if self.buffer.history_length != history:
            raise ValueError(f"{type(agent).__name__} has history_length={history}, but the replay buffer keeps "
                             f"histories of {self.buffer.history_length}; give it history_length={history}.")
        if batch_size > self.buffer.capacity:
            raise ValueError(f"batch_size {batch_size} is larger than the replay buffer's capacity "
                             f"{self.buffer.capacity}.")
        if buffer is not None and seed is not None:
            self.buffer.rng = np.random.default_rng(seed)
        if self.buffer.n_step != 1:
            if self.buffer.gamma is None:
                self.buffer.gamma = agent.gamma
            elif not np.isclose(self.buffer.gamma, agent.gamma):
                raise ValueError(f"The replay buffer's n-step gamma {self.buffer.gamma} differs from the "
                                 f"agent's gamma {agent.gamma}.")
        self.exploration = agent.default_exploration() if exploration is None else schedules.get(exploration)
        self.action_noise = agent.default_action_noise() if action_noise is None else noise_module.get(action_noise)
        self.batch_size = int(batch_size)
        self.learning_starts = int(learning_starts)
        self.train_freq = int(train_freq)
        self.gradient_steps = int(gradient_steps) if gradient_steps != -1 else self.train_freq * self.env.num_envs
        self.n_envs = self.env.num_envs
        self.vectorization_mode = vectorization_mode
        self.seed = seed
        self.prefetch = int(prefetch)
        self.policy_sync_every = max(int(policy_sync_every), 1)
        self._batches = 0
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()
        self._generation = 0  # bumped by as_dataset/close: older iterators go idle
        self.error: BaseException | None = None
        # Collector state; `state()` / `set_state()` carry it through checkpoints.
        self.env_steps = 0
        self.episodes = 0
        self.recent_returns: collections.deque = collections.deque(maxlen=10)
        self.recent_lengths: collections.deque = collections.deque(maxlen=10)
        self._episode_means: tuple[float, float] | None = None
        self.loop = acting.EnvironmentLoop(self.env, self._collection_policy())
        self._updates_left = 0
        # Batches sampled ahead of the updates (prefetch, chunks) when a checkpoint was taken:
        # after a resume they are sampled again without collecting, as the run would have.
        self._sample_only = 0
        self._sampled = 0  # batches sampled since `as_dataset`
        self._updates_at_start = 0  # the agent's gradient steps at `as_dataset`
        self._reset_seed = seed
        self._fields_cache = self._fields()
        # Set by callbacks.PriorityRefresh during fit: writes the finished
        # updates' TD errors into the prioritized buffer (called holding the lock).
        self.apply_priorities: Callable[[], None] | None = None

    def _check_spaces(self) -> None:
        for role, env_space, agent_space in (
            ("observation", self.env.single_observation_space, self.agent.observation_space),
            ("action", self.env.single_action_space, self.agent.action_space),
        ):
            if not spaces.same_spaces(env_space, agent_space):
                raise ValueError(f"The environment's {role} space {env_space!r} does not match the "
                                 f"agent's {agent_space!r}.")

    # --------------------------------------------------------------- collect
    @property
    def obs_dtype(self) -> np.dtype:
        return spaces.observation_dtype(self.agent.observation_space)

    @property
    def action_dtype(self) -> np.dtype:
        return np.dtype(np.int64) if self.agent.discrete else np.dtype(np.float32)

    def _collection_policy(self) -> acting.Policy:
        """The agent's policy, wrapped in the exploration this dataset collects with.

        Agents that explore through epsilon or action noise by default (DQN;
        DDPG, TD3) are explored around their deterministic policy; the others
        (SAC) sample from theirs, and a wrapper given to them adds to that.
        """
        space = self.agent.action_space
        explores_by_default = (self.agent.default_exploration() is not None
                               or self.agent.default_action_noise() is not None)
        policy: acting.Policy = acting.AgentPolicy(self.agent, deterministic=explores_by_default, rng=self.rng)
        env_steps = lambda: self.env_steps
        if self.exploration is not None:
            policy = acting.EpsilonGreedy(policy, self.exploration, space, self.rng, env_steps)
        if self.action_noise is not None:
            policy = acting.NoisyActions(policy, self.action_noise, space, self.rng, env_steps)
        return policy

    def step(self, random: bool = False) -> None:
        """One vector-env step: act, step, store the transitions, count episodes."""
        if self.loop.observation is None:
            self.loop.reset(seed=self._reset_seed)
            self._reset_seed = None
            if self.env_steps == 0 and self.seed is not None:
                self.env.seed_actions(self.seed)
        step = self.loop.step(random)
        valid = step.valid
        # Views rather than copies when every row is a real transition (the usual case).
        rows = slice(None) if valid.all() else valid
        if valid.any():
            self.buffer.add(
                step.observation[rows].astype(self.obs_dtype, copy=False),
                np.asarray(step.action)[rows].astype(self.action_dtype, copy=False),
                step.reward[rows].astype(np.float32),
                np.asarray(step.next_observation)[rows].astype(self.obs_dtype, copy=False),
                step.terminated[rows],
                truncated=step.truncated[rows],
                env_ids=np.flatnonzero(valid),
            )
        self.env_steps += int(valid.sum())
        if step.episode_returns:
            self.episodes += len(step.episode_returns)
            self.recent_returns.extend(step.episode_returns)
            self.recent_lengths.extend(step.episode_lengths)
            self._episode_means = None

    def next_batch(self, generation: int | None = None) -> tuple[np.ndarray, ...]:
        """Collects what is due, then samples one batch (flat, in `_fields` order)."""
        return tuple(value[0] for value in self.next_batches(1, generation))

    def next_batches(self, count: int, generation: int | None = None) -> tuple[np.ndarray, ...]:
        """`count` consecutive batches, each field stacked on a new leading axis.

        Batch by batch: collect what is due (a round of `train_freq` steps
        before every `gradient_steps` batches), then sample.

        A call from an iterator of an earlier `fit` (a prefetch that outlived
        it) returns zeros without touching the environment or the buffer.
        """
        with self.lock:
            if generation is not None and generation != self._generation:
                return tuple(np.zeros((count,) + shape, dtype.as_numpy_dtype)
                             for _, dtype, shape in self._fields_cache)
            if generation is not None and self.error is not None:
                # tf.data calls again after a failed element; collect nothing more
                # until the next fit (as_dataset clears the error).
                raise self.error
            batches = []
            try:
                for _ in range(count):
                    self._batches += 1
                    if self._sample_only:
                        self._sample_only -= 1
                    elif self._updates_left == 0:
                        # Counting stored transitions (not env steps) refills a buffer
                        # that a checkpoint did not keep.
                        while len(self.buffer) < min(self.learning_starts, self.buffer.capacity):
                            self.step(random=True)
                        if self._batches >= self.policy_sync_every:  # only a collecting batch needs it
                            self.agent.refresh_policy()
                            self._batches = 0
                        for _ in range(self.train_freq):
                            self.step()
                        self._updates_left = self.gradient_steps - 1
                    else:
                        self._updates_left -= 1
                    if not batches:
                        self.flush_priorities()
                    batch, indices = self.buffer.sample(self.batch_size)
                    if self.buffer.prioritized:
                        batch["indices"] = indices
                    batch.update(self.stats())
                    batches.append(batch)
                    self._sampled += 1
            except BaseException as error:
                self.error = error
                self.loop.observation = None  # the failed step left the episode mid-way: restart it
                self.buffer.drop_pending()
                raise
            return tuple(np.asarray([b[name] for b in batches], dtype=dtype.as_numpy_dtype)
                         for name, dtype, _ in self._fields_cache)

    def flush_priorities(self) -> None:
        """Brings the prioritized buffer up to date with the finished updates (hold `lock`)."""
        if self.apply_priorities is not None:
            self.apply_priorities()

    def stats(self) -> dict[str, float]:
        """Episode statistics as they go into the logs."""
        if self._episode_means is None:  # recomputed only after an episode ends
            nan = float("nan")
            self._episode_means = (float(np.mean(self.recent_returns)) if self.recent_returns else nan,
                                   float(np.mean(self.recent_lengths)) if self.recent_lengths else nan)
        stats = {
            "episode_return": self._episode_means[0],
            "episode_length": self._episode_means[1],
            "env_steps": self.env_steps,
        }
        if self.exploration is not None:
            stats["exploration_rate"] = self.exploration(self.env_steps)
        return stats

    def _fields(self) -> list[tuple[str, tf.DType, tuple]]:
        b = self.batch_size
        obs_shape = self.agent.observation_space.shape
        act_shape = self.agent.action_space.shape
        fields = [
            ("observation", tf.as_dtype(self.obs_dtype), (b,) + obs_shape),
            ("action", tf.as_dtype(self.action_dtype), (b,) + act_shape),
            ("reward", tf.float32, (b,)),
            ("next_observation", tf.as_dtype(self.obs_dtype), (b,) + obs_shape),
            ("terminated", tf.float32, (b,)),
        ]
        fields += [(name, tf.float32, (b,)) for name in self.buffer.extra_fields]
        length = self.buffer.history_length
        for prefix in ("history_", "next_history_") if length else ():
            fields += [(prefix + "observation", tf.as_dtype(self.obs_dtype), (b, length) + obs_shape),
                       (prefix + "action", tf.as_dtype(self.action_dtype), (b, length) + act_shape),
                       (prefix + "mask", tf.bool, (b, length))]
        if self.buffer.prioritized:
            fields.append(("indices", tf.int64, (b,)))
        fields += [(name, tf.float32, ()) for name in self.stats() if name != "env_steps"]
        return fields + [("env_steps", tf.int64, ())]

    def as_dataset(self, take: int | None = None) -> tf.data.Dataset:
        """The tf.data.Dataset of batches: `take` of them, or endless (then give
        fit a steps_per_epoch). Collection stops with the last batch taken.

        Batches come from the collector in chunks: the largest count up to
        `max(gradient_steps, policy_sync_every)` (and 64) that divides `take`
        and is a divisor or a multiple of `gradient_steps`, so a chunk holds
        whole rounds of updates or an equal part of one and never runs past
        the end of the data. A chunk is collected and sampled round by round
        as it would be batch by batch, but ahead of its updates: the acting
        policy is up to about a chunk of updates older, which
        `policy_sync_every` already allows (1 gives single batches, with
        `gradient_steps=1`). With a prioritized buffer, the batches of a chunk
        see the priorities of the updates finished before the chunk. One call
        per chunk saves the per-call cost of the pipeline (~0.25 ms).
        """
        fields = self._fields()
        gs = self.gradient_steps
        limit = min(MAX_CHUNK, max(gs, self.policy_sync_every))
        chunk = max(d for d in range(1, limit + 1)
                    if (take is None or take % d == 0) and (gs % d == 0 or d % gs == 0))
        with self.lock:
            self._generation += 1
            generation = self._generation
            self.error = None
            self._sampled = 0
            self._updates_at_start = int(self.agent.num_gradient_steps.numpy())

        def produce(_):
            values = tf.numpy_function(lambda: self.next_batches(chunk, generation), [],
                                       [dtype for _, dtype, _ in fields], stateful=True)
            out = {}
            for (name, _, shape), value in zip(fields, values):
                value.set_shape((chunk,) + shape)
                out[name] = value
            return out

        dataset = tf.data.Dataset.from_tensors(np.int64(0)).repeat().map(produce)
        if take is not None:
            dataset = dataset.take(take // chunk)  # before the prefetch: nothing is collected past the end
        if self.prefetch:  # the next chunk (and its collection) is prepared during this one's updates
            dataset = dataset.prefetch(self.prefetch)
        dataset = dataset.unbatch()
        options = tf.data.Options()
        # No prefetch tf.data would add on its own: it would run collection
        # further ahead of the update than `prefetch` says.
        options.experimental_optimization.inject_prefetch = False
        return dataset.with_options(options)

    def close(self, env: bool = False) -> None:
        """Waits for collection in progress, then stops the current iterator's collection.

        `Agent.fit` calls it when it returns, so the environment is free for
        the caller (e.g. to reset it) while no prefetch keeps stepping it.
        `env=True` also closes the environment, for a dataset that is done.
        """
        with self.lock:
            self._generation += 1
            self.apply_priorities = None  # a fit that failed did not reach PriorityRefresh.on_train_end
            if env:
                self.env.env.close()

    def updates_for(self, env_steps: int, from_start: bool = False) -> int:
        """Gradient steps that collect `env_steps` environment steps in total.

        Counted from what this dataset has collected, or with `from_start`, for
        the whole run from its first step (a resumed run's plan).
        """
        begin = self.learning_starts if from_start else max(self.learning_starts, self.env_steps)
        rounds = max(env_steps - begin, 0) // (self.train_freq * self.n_envs)
        return rounds * self.gradient_steps

    # ------------------------------------------------------------- checkpoint
    def get_config(self) -> dict[str, Any]:
        return {
            "env_id": self.env_id,
            "batch_size": self.batch_size,
            "learning_starts": self.learning_starts,
            "train_freq": self.train_freq,
            "gradient_steps": self.gradient_steps,
            "n_envs": self.n_envs,
            "vectorization_mode": self.vectorization_mode,
            "exploration": None if self.exploration is None else schedules.serialize(self.exploration),
            "action_noise": noise_module.serialize(self.action_noise),
            "seed": self.seed,
            "prefetch": self.prefetch,
            "policy_sync_every": self.policy_sync_every,
            "buffer": self.buffer.get_config(),
        }

    def batches_ahead(self) -> int:
        """Batches sampled (and their env steps collected) that no update has used yet."""
        used = int(self.agent.num_gradient_steps.numpy()) - self._updates_at_start
        return self._sample_only + max(self._sampled - used, 0)

    def state(self) -> dict[str, Any]:
        """The collector's counters for a checkpoint (call holding `lock`, between updates)."""
        return {
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "recent_returns": list(self.recent_returns),
            "recent_lengths": list(self.recent_lengths),
            "updates_left": self._updates_left,
            "batches_ahead": self.batches_ahead(),
            "rng": self.rng.bit_generator.state,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.env_steps = int(state["env_steps"])
        self.episodes = int(state["episodes"])
        self.recent_returns.extend(state["recent_returns"])
        self.recent_lengths.extend(state["recent_lengths"])
        self._episode_means = None
        self._updates_left = int(state["updates_left"])
        self._sample_only = int(state.get("batches_ahead", 0))
        self.rng.bit_generator.state = state["rng"]
        self.loop.observation = None  # the environment restarts its episode
        self.buffer.drop_pending()
        if self.seed is not None:
            self._reset_seed = self.seed + self.env_steps
