"""Small real gymnasium environments and helpers shared by the tests.

Imported by the test modules as `support` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import gymnasium as gym
import keras
import numpy as np

import kerasrl

HIDDEN = (32, 32)


class CountingEnv(gym.Env):
    """A deterministic env whose observation is `[100 * tag + episode, t]`.

    The episode terminates (terminated=True) when t reaches `terminate_at`
    (never if None); wrap it in `gym.wrappers.TimeLimit` to truncate. The
    reward is `t` after the step, so every stored transition can be matched
    exactly against what the env produced.
    """

    metadata = {"render_modes": []}

    def __init__(self, terminate_at: int | None = None, discrete: bool = False,
                 nan_reward_at: int | None = None, low=-1.0, high=1.0, tag: int = 0):
        self.tag = tag
        self.terminate_at = terminate_at
        self.nan_reward_at = nan_reward_at  # global step count (1-based) whose reward is NaN
        self.observation_space = gym.spaces.Box(-1e6, 1e6, shape=(2,), dtype=np.float32)
        if discrete:
            self.action_space = gym.spaces.Discrete(3)
        else:
            self.action_space = gym.spaces.Box(np.float32(low), np.float32(high), shape=(1,), dtype=np.float32)
        self.episode = -1
        self.t = 0
        self.total_steps = 0

    def _obs(self) -> np.ndarray:
        return np.array([100 * self.tag + self.episode, self.t], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        assert self.action_space.contains(np.asarray(action, dtype=self.action_space.dtype)), action
        self.t += 1
        self.total_steps += 1
        terminated = self.terminate_at is not None and self.t >= self.terminate_at
        reward = float(self.t)
        if self.nan_reward_at is not None and self.total_steps == self.nan_reward_at:
            reward = float("nan")
        return self._obs(), reward, terminated, False, {}


class NanRewardWrapper(gym.Wrapper):
    """Returns a NaN reward at the `at`-th step (counted over the wrapper's life)."""

    def __init__(self, env: gym.Env, at: int):
        super().__init__(env)
        self.at = at
        self.steps = 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.steps == self.at:
            reward = float("nan")
        return obs, reward, terminated, truncated, info


class InterruptAt(keras.callbacks.Callback):
    """Stops a fit the way Ctrl-C does, at the start of epoch `epoch`."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt(f"interrupted at epoch {epoch}")


def make_sac(env, compile: bool = True, jit_compile: bool = False, steps_per_execution: int = 1,
             lr: float = 1e-3, **kwargs) -> kerasrl.SAC:
    """A small seeded SAC for `env`, compiled (without XLA unless asked: it compiles ~5x faster)."""
    kwargs.setdefault("hidden", HIDDEN)
    kwargs.setdefault("seed", 0)
    agent = kerasrl.SAC.from_env(env, **kwargs)
    if compile:
        agent.compile(optimizer=keras.optimizers.Adam(lr), jit_compile=jit_compile,
                      steps_per_execution=steps_per_execution)
    return agent


def make_data(env, agent, capacity: int = 2_000, **kwargs) -> kerasrl.EnvDataset:
    kwargs.setdefault("batch_size", 16)
    kwargs.setdefault("learning_starts", 32)
    kwargs.setdefault("seed", 0)
    return kerasrl.EnvDataset(env, agent, buffer=kerasrl.ReplayBuffer(capacity, history_length=agent.history_length),
                              **kwargs)


def numpy_weights(model) -> list[np.ndarray]:
    return [np.array(w.numpy(), copy=True) for w in model.weights]


def assert_weights_equal(a, b) -> None:
    wa, wb = list(a), list(b)
    assert len(wa) == len(wb)
    for x, y in zip(wa, wb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def weights_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))


def stored(buffer: kerasrl.ReplayBuffer) -> dict[str, np.ndarray]:
    """The buffer's transitions in insertion order (valid before it wraps)."""
    assert buffer.size < buffer.capacity or buffer.position == 0
    return {k: v[: buffer.size] for k, v in buffer.storage.items()}


def random_returns(env_id: str, episodes: int, seed: int) -> np.ndarray:
    """Undiscounted returns of the uniform random policy."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    out = []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        out.append(total)
    return np.asarray(out)


def batch_dict(obs, actions, rewards, next_obs, terminated) -> dict:
    return {
        "observation": keras.ops.convert_to_tensor(obs),
        "action": keras.ops.convert_to_tensor(actions),
        "reward": keras.ops.convert_to_tensor(np.asarray(rewards, np.float32)),
        "next_observation": keras.ops.convert_to_tensor(next_obs),
        "terminated": keras.ops.convert_to_tensor(np.asarray(terminated, np.float32)),
    }


def perturb_targets(agent, seed=0):
    """Makes the targets differ from the online networks so the test can tell them apart."""
    rng = np.random.default_rng(seed)
    for _, target in agent.target_pairs():
        for w in target.weights:
            w.assign(w.numpy() + rng.normal(0, 0.3, w.shape).astype(np.float32))


def np_forward(net, x):
    return np.asarray(net(keras.ops.convert_to_tensor(x, "float32")))


def log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
