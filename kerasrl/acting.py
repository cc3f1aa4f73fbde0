"""Acting: policies with state, exploration as wrappers, one environment loop.

A `Policy` maps a batch of observations (one row per environment copy) and
its state to actions. The agent's own policy is `AgentPolicy`; exploration
wraps it (`EpsilonGreedy`, `NoisyActions`) instead of being an argument every
agent must accept. `EnvironmentLoop` steps a gymnasium Env or VectorEnv with a
policy: it keeps each copy's observation, policy state, return and length,
restarts the state of every copy whose next observation starts an episode,
and hands back each step's transitions. `EnvDataset` collects with it,
`Agent.evaluate_env` and `Agent.play` run episodes with it.

Example:

```python
env = gym.make("Pendulum-v1")
policy = kerasrl.acting.NoisyActions(kerasrl.acting.AgentPolicy(agent, deterministic=True),
                                     kerasrl.noise.Gaussian(0.1), env.action_space)
returns, lengths = kerasrl.acting.EnvironmentLoop(env, policy).run_episodes(3, seed=0)
```
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import gymnasium as gym
import numpy as np

from kerasrl import noise as noise_module
from kerasrl import schedules, spaces

AUTORESET = gym.vector.AutoresetMode


class Policy:
    """Actions for a batch of observations, one row per environment copy.

    Stateless policies keep the defaults (their state is None). A policy with
    memory returns its state from `initial_state`, restarts rows with
    `reset_state` and moves it on with `advance` after every step, with the
    action that was actually taken (exploration included).
    """

    def initial_state(self, num_envs: int) -> Any:
        return None

    def reset_state(self, state: Any, starts: np.ndarray) -> Any:
        """`state` with the rows in `starts` (a bool mask) back to the initial state."""
        return state

    def select(self, observation: np.ndarray, state: Any) -> np.ndarray:
        raise NotImplementedError

    def advance(self, state: Any, observation: np.ndarray, action: np.ndarray) -> Any:
        return state


class AgentPolicy(Policy):
    """An agent's policy, acting through its numpy copy of the networks.

    Args:
        agent: a kerasrl agent.
        deterministic: act with the policy's mode.
        rng: the generator of the policy's sampling (the agent's own by default).
        nets: the numpy networks to act with; by default the agent's acting
            snapshot at each call (`agent.policy_snapshot()`, refreshed during fit).
    """

    def __init__(self, agent: Any, deterministic: bool = False, rng: np.random.Generator | None = None,
                 nets: dict | None = None):
        self.agent = agent
        self.deterministic = bool(deterministic)
        self.rng = agent._act_rng if rng is None else rng
        self.nets = nets

    def initial_state(self, num_envs: int) -> Any:
        return self.agent.initial_state(num_envs) if self.agent.stateful else None

    def reset_state(self, state: Any, starts: np.ndarray) -> Any:
        return self.agent.reset_state(state, starts) if self.agent.stateful else state

    def select(self, observation: np.ndarray, state: Any) -> np.ndarray:
        return self.agent._select(self._nets(), observation, state, self.deterministic, self.rng)

    def advance(self, state: Any, observation: np.ndarray, action: np.ndarray) -> Any:
        return self.agent._advance_state(state, observation, action, self._nets()) if self.agent.stateful else state

    def _nets(self) -> dict:
        return self.agent.policy_snapshot() if self.nets is None else self.nets


class _Wrapper(Policy):
    """A policy that changes the actions of another; state passes through."""

    def __init__(self, policy: Policy):
        self.policy = policy

    def initial_state(self, num_envs: int) -> Any:
        return self.policy.initial_state(num_envs)

    def reset_state(self, state: Any, starts: np.ndarray) -> Any:
        return self.policy.reset_state(state, starts)

    def advance(self, state: Any, observation: np.ndarray, action: np.ndarray) -> Any:
        return self.policy.advance(state, observation, action)


def epsilon_greedy(actions: np.ndarray, epsilon: float, action_space: gym.spaces.Space,
                   rng: np.random.Generator) -> np.ndarray:
    """Each action replaced, with probability epsilon, by a uniform random one."""
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ValueError(f"Epsilon-greedy exploration needs Discrete actions, got {action_space!r}.")
    explore = rng.random(len(actions)) < epsilon
    if explore.any():
        random = rng.integers(0, action_space.n, len(actions)) + action_space.start
        actions = np.where(explore, random, actions)
    return actions


def add_noise(actions: np.ndarray, noise: np.ndarray, action_space: gym.spaces.Space) -> np.ndarray:
    """`noise` (in [-1, 1] units of the Box, one row per action) added, clipped to the bounds."""
    if not isinstance(action_space, gym.spaces.Box):
        raise ValueError(f"Action noise needs Box actions, got {action_space!r}.")
    unit = spaces.box_to_unit(action_space, actions).reshape(len(actions), -1)
    unit = np.clip(unit + np.reshape(noise, unit.shape), -1.0, 1.0)
    return spaces.unit_to_box(action_space, unit).reshape(np.shape(actions))


class EpsilonGreedy(_Wrapper):
    """Epsilon-greedy exploration around a policy (Discrete actions).

    Args:
        policy: the policy explored around (usually deterministic).
        epsilon: a float or a `kerasrl.schedules` schedule of env steps.
        action_space: the Discrete action space.
        rng: the generator of the random choices.
        env_steps: returns the env steps so far, where the schedule is read.
    """

    def __init__(self, policy: Policy, epsilon: schedules.Schedule | float, action_space: gym.spaces.Space,
                 rng: np.random.Generator | None = None, env_steps: Callable[[], int] = lambda: 0):
        super().__init__(policy)
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(f"Epsilon-greedy exploration needs Discrete actions, got {action_space!r}.")
        self.epsilon = schedules.get(epsilon)
        self.action_space = action_space
        self.rng = np.random.default_rng() if rng is None else rng
        self.env_steps = env_steps

    def select(self, observation: np.ndarray, state: Any) -> np.ndarray:
        actions = self.policy.select(observation, state)
        return epsilon_greedy(actions, self.epsilon(self.env_steps()), self.action_space, self.rng)


class NoisyActions(_Wrapper):
    """Action noise (`kerasrl.noise`) around a policy (Box actions).

    The noise is in [-1, 1] units of the Box, one process per environment copy,
    restarted with the copy's episode; noisy actions are clipped to the bounds.

    Args:
        policy: the policy explored around (usually deterministic).
        noise: a `kerasrl.noise.ActionNoise` (or its config).
        action_space: the Box action space.
        rng: the generator of the noise.
        env_steps: returns the env steps so far, where a sigma schedule is read.
    """

    def __init__(self, policy: Policy, noise: noise_module.ActionNoise, action_space: gym.spaces.Space,
                 rng: np.random.Generator | None = None, env_steps: Callable[[], int] = lambda: 0):
        super().__init__(policy)
        if not isinstance(action_space, gym.spaces.Box):
            raise ValueError(f"Action noise needs Box actions, got {action_space!r}.")
        self.noise = noise_module.get(noise)
        self.action_space = action_space
        self.act_dim = spaces.flat_dim(action_space)
        self.rng = np.random.default_rng() if rng is None else rng
        self.env_steps = env_steps

    def initial_state(self, num_envs: int) -> Any:
        self.noise.reset()
        return super().initial_state(num_envs)

    def reset_state(self, state: Any, starts: np.ndarray) -> Any:
        if starts.any():
            self.noise.reset(np.flatnonzero(starts))
        return super().reset_state(state, starts)

    def select(self, observation: np.ndarray, state: Any) -> np.ndarray:
        actions = self.policy.select(observation, state)
        noise = self.noise.sample(self.rng, len(observation), self.act_dim, self.env_steps())
        return add_noise(actions, noise, self.action_space)


# ------------------------------------------------------------------ envs
class _SingleEnv:
    """One gymnasium Env presented as a vector env of size 1 with SAME_STEP autoreset.

    `render(env)` is called after every reset and step (before an automatic
    reset), e.g. to collect frames; after `max_episodes` finished episodes the
    environment is no longer reset (and rendered) for one more.
    """

    num_envs = 1
    mode = AUTORESET.SAME_STEP

    def __init__(self, env: gym.Env, max_episodes: int | None = None, render: Callable[[gym.Env], None] | None = None):
        self.env = env
        self.single_observation_space = env.observation_space
        self.single_action_space = env.action_space
        self.max_episodes = max_episodes
        self.render = render
        self.episodes = 0

    def reset(self, seed: int | None = None):
        obs, info = self.env.reset(seed=seed)
        if self.render:
            self.render(self.env)
        return np.asarray(obs)[None], info

    def step(self, actions: np.ndarray):
        obs, reward, terminated, truncated, info = self.env.step(actions[0])
        if self.render:
            self.render(self.env)
        info = {}
        if terminated or truncated:
            self.episodes += 1
            info = {"final_obs": [obs], "_final_obs": np.array([True])}
            if self.max_episodes is None or self.episodes < self.max_episodes:
                obs, _ = self.env.reset()
                if self.render:
                    self.render(self.env)
        return (np.asarray(obs)[None], np.array([reward], dtype=np.float64),
                np.array([terminated]), np.array([truncated]), info)

    def sample_actions(self) -> np.ndarray:
        return np.asarray(self.env.action_space.sample())[None]

    def seed_actions(self, seed: int | None) -> None:
        self.env.action_space.seed(seed)


class _VectorEnv:
    """A gymnasium VectorEnv, with its autoreset mode (SAME_STEP or NEXT_STEP) checked."""

    def __init__(self, env: gym.vector.VectorEnv):
        self.env = env
        self.num_envs = env.num_envs
        self.single_observation_space = env.single_observation_space
        self.single_action_space = env.single_action_space
        mode = env.metadata.get("autoreset_mode", AUTORESET.NEXT_STEP)
        if mode not in (AUTORESET.SAME_STEP, AUTORESET.NEXT_STEP):
            raise ValueError(f"Unsupported vector env autoreset mode {mode}; use SAME_STEP or NEXT_STEP.")
        self.mode = mode

    def reset(self, seed: int | None = None):
        return self.env.reset(seed=seed)

    def step(self, actions: np.ndarray):
        return self.env.step(actions)

    def sample_actions(self) -> np.ndarray:
        return np.asarray(self.env.action_space.sample())

    def seed_actions(self, seed: int | None) -> None:
        self.env.action_space.seed(seed)


def vector_view(env: Any, **single_env_options: Any) -> _SingleEnv | _VectorEnv:
    """The loop's view of a gymnasium Env or VectorEnv."""
    if isinstance(env, (_SingleEnv, _VectorEnv)):
        return env
    if isinstance(env, gym.vector.VectorEnv):
        return _VectorEnv(env)
    if isinstance(env, gym.Env):
        return _SingleEnv(env, **single_env_options)
    raise ValueError(f"Expected a gymnasium Env or VectorEnv, got {env!r}.")


# ------------------------------------------------------------------ loop
class Step(NamedTuple):
    """One step of every environment copy, as the loop hands it back.

    `next_observation` is the true next observation (the final one where an
    episode ended); `valid` is False for the rows that only reset (NEXT_STEP
    autoreset), which are no transitions. `episode_returns` and
    `episode_lengths` are those of the episodes that ended at this step.
    """

    observation: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_observation: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    valid: np.ndarray
    episode_returns: list[float]
    episode_lengths: list[int]


class EnvironmentLoop:
    """Steps an environment (one Env or a VectorEnv) with a policy.

    Args:
        env: a gymnasium Env or VectorEnv (SAME_STEP or NEXT_STEP autoreset).
        policy: a `Policy`.

    It starts on the first `step` (or `reset(seed)`); after an error in a step
    the episode is abandoned and the next `step` starts afresh.
    """

    def __init__(self, env: Any, policy: Policy):
        self.env = vector_view(env)
        self.policy = policy
        self.num_envs = self.env.num_envs
        self.observation: np.ndarray | None = None
        self.state: Any = None
        self.skip = np.zeros(self.num_envs, bool)  # NEXT_STEP autoreset: the next step only resets these
        self.returns = np.zeros(self.num_envs)
        self.lengths = np.zeros(self.num_envs, np.int64)

    def reset(self, seed: int | None = None) -> None:
        """Starts an episode in every copy (the first reset seeded with `seed`)."""
        self.observation, _ = self.env.reset(seed=seed)
        self.state = self.policy.initial_state(self.num_envs)
        self.skip[:] = False
        self.returns[:] = 0.0
        self.lengths[:] = 0

    def step(self, random: bool = False) -> Step:
        """Acts (uniformly at random with `random`), steps every copy, and returns the step.

        Raises a ValueError, with nothing of the step handed back, when the
        environment returns a non-finite reward.
        """
        if self.observation is None:
            self.reset()
        obs = self.observation
        actions = self.env.sample_actions() if random else self.policy.select(obs, self.state)
        self.state = self.policy.advance(self.state, obs, actions)
        next_obs, rewards, terminated, truncated, info = self.env.step(actions)
        rewards = np.asarray(rewards, dtype=np.float64)
        if not np.all(np.isfinite(rewards)):
            self.observation = None
            raise ValueError(f"The environment returned a non-finite reward {rewards}; "
                             "nothing from this step was stored.")
        terminated, truncated = np.asarray(terminated), np.asarray(truncated)
        done = terminated | truncated
        stored_next = next_obs
        if "_final_obs" in info:  # SAME_STEP autoreset: the true last observation
            stored_next = np.array(next_obs, copy=True)
            for i in np.flatnonzero(info["_final_obs"]):
                stored_next[i] = info["final_obs"][i]
        valid = ~self.skip
        self.returns[valid] += rewards[valid]
        self.lengths[valid] += 1
        ended = np.flatnonzero(done & valid)
        episode_returns = [float(self.returns[i]) for i in ended]
        episode_lengths = [int(self.lengths[i]) for i in ended]
        self.returns[ended] = 0.0
        self.lengths[ended] = 0
        # The copies whose next observation starts an episode start from the initial state.
        if self.env.mode == AUTORESET.NEXT_STEP:
            starts = self.skip
            self.skip = done & valid
        else:
            starts = done
        if starts.any():
            self.state = self.policy.reset_state(self.state, starts)
        self.observation = next_obs
        return Step(obs, actions, rewards, stored_next, terminated, truncated, valid,
                    episode_returns, episode_lengths)

    def run_episodes(self, episodes: int, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Runs until `episodes` episodes have ended (counted over all copies).

        Returns their returns and lengths, in the order they ended.
        """
        if int(episodes) < 1:
            raise ValueError(f"Running episodes needs episodes >= 1, got {episodes}.")
        self.reset(seed)
        returns: list[float] = []
        lengths: list[int] = []
        while len(returns) < episodes:
            step = self.step()
            returns += step.episode_returns
            lengths += step.episode_lengths
        return np.asarray(returns[:episodes], np.float64), np.asarray(lengths[:episodes], np.int64)
