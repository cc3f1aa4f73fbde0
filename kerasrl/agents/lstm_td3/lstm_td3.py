"""LSTM-TD3 (Meng et al. 2021): TD3 whose actor and critics remember the recent past."""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import gymnasium as gym
import keras
import numba
import numpy as np
from keras import ops

from kerasrl import spaces
from kerasrl.agents.td3 import TD3
from kerasrl.networks import NumpyMemoryNet, memory_network


class HistoryState(NamedTuple):
    """The acting state of a memory agent: the last L steps of each environment copy, oldest first.

    `observation` (B, L, obs_dim) preprocessed observations, `action`
    (B, L, act_dim) actions in [-1, 1] units, `mask` (B, L) True on the steps
    that exist (an episode's first step has none). `runs` is a cache of the
    numpy actor that made it (`MemoryRuns`), not part of the state's value:
    without it, or after the actor's weights change, acting computes it again
    from the windows.
    """

    observation: np.ndarray
    action: np.ndarray
    mask: np.ndarray
    runs: MemoryRuns | None = None

    def runs_of(self, actor: NumpyMemoryNet) -> MemoryRuns | None:
        """The kept runs if `actor`, with its current weights, made them; else None."""
        runs = self.runs
        return runs if runs is not None and runs.actor is actor and runs.version == actor.version else None


class MemoryRuns(NamedTuple):
    """The actor's LSTM runs over the windows (`NumpyMemoryNet.runs`), and the weights they were made with."""

    actor: NumpyMemoryNet
    version: int
    h: np.ndarray
    c: np.ndarray


@numba.njit(cache=True, nogil=True)
def _shifted(observations: np.ndarray, actions: np.ndarray, mask: np.ndarray, observation: np.ndarray,
             action: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
    """The windows moved on by one step: each drops its oldest step and ends with the new one,
    the action (B, act_dim) taken from the Box [low, high] to [-1, 1] as `spaces.box_to_unit`
    does, in float32. One compiled call: the acting hot path pays it every step."""
    new_observations, new_actions, new_mask = np.empty_like(observations), np.empty_like(actions), np.empty_like(mask)
    new_observations[:, :-1], new_observations[:, -1] = observations[:, 1:], observation
    new_actions[:, :-1] = actions[:, 1:]
    for b in range(action.shape[0]):
        for j in range(action.shape[1]):
            new_actions[b, -1, j] = np.float32(2.0) * (action[b, j] - low[j]) / (high[j] - low[j]) - np.float32(1.0)
    new_mask[:, :-1], new_mask[:, -1] = mask[:, 1:], True
    return new_observations, new_actions, new_mask


@keras.saving.register_keras_serializable(package="kerasrl")
class LSTMTD3(TD3):
    """LSTM-TD3 for partially observed tasks with Box actions.

    The actor `mu(h_t, o_t)` and the twin critics `Q(h_t, o_t, a_t)` see,
    besides the current observation, the history `h_t` of the last
    `history_length` observations and actions of the episode, through a
    memory branch (Dense -> LSTM -> Dense) beside a current-feature branch,
    combined by Dense layers (`kerasrl.networks.memory_network`). The update
    is TD3's (clipped double Q, target policy smoothing, policy delay), with
    the targets computed on the history before t+1. The replay buffer must
    keep histories of the same length: `ReplayBuffer(capacity,
    history_length=L)` (EnvDataset makes one by default).

    Acting carries the history: `state = agent.initial_state()`, then
    `action, state = agent.act(obs, state=state)`; a new episode starts from
    `initial_state()` again. Acting runs in numpy (see `NumpyMemoryNet`).
    `history_length=0` is TD3 with these networks and no memory.

    Args:
        observation_space: a gymnasium Box (or Discrete) space.
        action_space: a gymnasium Box space.
        history_length: L, past steps the networks see.
        memory_hidden: Dense layers over each past step, before the LSTM.
        lstm_units: LSTM size.
        memory_after: Dense layers after the LSTM.
        feature_hidden: Dense layers over the current observation (and action).
        hidden: the combination layers over both branches.
        use_past_actions: give the memory the past actions besides the
            past observations.
        activation, gamma, tau, target_update_interval, policy_delay,
        target_noise, target_noise_clip, max_grad_norm, seed: as for `TD3`.

    Example:

    ```python
    env = kerasrl.envs.pomdp.make("Pendulum-v1", "remove_velocity")
    agent = kerasrl.LSTMTD3.from_env(env, history_length=5)
    agent.compile(optimizer=keras.optimizers.Adam(1e-3))
    data = kerasrl.EnvDataset(env, agent, buffer=kerasrl.ReplayBuffer(100_000, history_length=5),
                              batch_size=100, learning_starts=1000)
    agent.fit(data, epochs=40, steps_per_epoch=1000)
    state = agent.initial_state()
    action, state = agent.act(obs, state=state, deterministic=True)
    ```
    """

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        history_length: int = 5,
        memory_hidden: Sequence[int] = (128,),
        lstm_units: int = 128,
        memory_after: Sequence[int] = (),
        feature_hidden: Sequence[int] = (128, 128),
        hidden: Sequence[int] = (128,),
        use_past_actions: bool = True,
        **kwargs: Any,
    ):
        if int(history_length) < 0:
            raise ValueError(f"LSTMTD3 history_length must be >= 0, got {history_length}.")
        self.history_length = int(history_length)
        self.memory_hidden = tuple(int(u) for u in memory_hidden)
        self.lstm_units = int(lstm_units)
        self.memory_after = tuple(int(u) for u in memory_after)
        self.feature_hidden = tuple(int(u) for u in feature_hidden)
        self.use_past_actions = bool(use_past_actions)
        super().__init__(observation_space, action_space, hidden=hidden, **kwargs)

    # --------------------------------------------------------------- networks
    def _network(self, name: str, seed: int | None, output_dim: int, with_action: bool,
                 output_activation: str | None) -> keras.Model:
        return memory_network(
            self.obs_dim, self.act_dim, self.history_length, output_dim, with_action=with_action,
            memory_hidden=self.memory_hidden, lstm_units=self.lstm_units, memory_after=self.memory_after,
            feature_hidden=self.feature_hidden, combination_hidden=self.hidden,
            use_past_actions=self.use_past_actions, activation=self.activation,
            output_activation=output_activation, name=name, seed=seed, dtype=self.dtype_policy)

    def make_actor(self, name: str, seed: int | None) -> keras.Model:
        return self._network(name, seed, self.act_dim, with_action=False, output_activation="tanh")

    def make_critic(self, name: str, seed: int | None) -> keras.Model:
        return self._network(name, seed, 1, with_action=True, output_activation=None)

    def state_input(self, batch: dict[str, Any], next_step: bool = False) -> dict[str, Any]:
        """The current observation and the history before t (before t+1 with `next_step`)."""
        prefix = "next_" if next_step else ""
        inputs = {"observation": self.preprocess(batch[prefix + "observation"])}
        length = self.history_length
        if length:
            past = ops.reshape(batch[prefix + "history_observation"], (-1,) + self.observation_space.shape)
            inputs["history_observation"] = ops.reshape(self.preprocess(past), (-1, length, self.obs_dim))
            inputs["history_mask"] = ops.cast(batch[prefix + "history_mask"], "bool")
            if self.use_past_actions:
                inputs["history_action"] = self.unscale_action(
                    ops.reshape(batch[prefix + "history_action"], (-1, length, self.act_dim)))
        return inputs

    def q_value(self, critic: keras.Model, state: dict[str, Any], unit_action: Any) -> Any:
        return ops.squeeze(critic({**state, "action": unit_action}), -1)

    # ----------------------------------------------------------------- acting
    stateful = True

    def _numpy_policy(self) -> dict[str, NumpyMemoryNet]:
        return {"actor": NumpyMemoryNet(self.actor)}

    def initial_state(self, batch_size: int | None = None) -> HistoryState:
        """The state before an episode's first step: an empty history (for `batch_size` copies, or one)."""
        n = 1 if batch_size is None else int(batch_size)
        length = self.history_length
        return HistoryState(np.zeros((n, length, self.obs_dim), np.float32),
                            np.zeros((n, length, self.act_dim), np.float32), np.zeros((n, length), bool))

    def reset_state(self, state: HistoryState, done: np.ndarray) -> HistoryState:
        """`state` with the rows whose episode ended (`done`) back to the initial state."""
        done = np.asarray(done, bool)
        if not done.any():
            return state
        keep = ~done
        runs = state.runs
        if runs is not None:
            runs = runs._replace(h=runs.h * keep[:, None, None], c=runs.c * keep[:, None, None])
        return HistoryState(state.observation * keep[:, None, None], state.action * keep[:, None, None],
                            state.mask & keep[:, None], runs)

    def advance_state(self, state: HistoryState, observation: Any, action: Any) -> HistoryState:
        """`state` moved on by one step: the window drops its oldest step and ends with (observation, action).

        `action` is the one taken, in the environment's units (as the replay
        buffer stores it): exploration and random warm-up steps included.
        """
        obs, _ = spaces.check_batch(self.observation_space, observation, "observation")
        return self._advance_state(state, obs, action)

    def _advance_state(self, state: HistoryState, obs: np.ndarray, action: Any,
                       nets: dict | None = None) -> HistoryState:
        """`advance_state` for a batch already checked (the acting hot path checks it once, in act or the
        loop), with the actor's runs moved on for the next step (`nets`: the numpy policy that acts next)."""
        if not self.history_length:
            return state
        space = self.action_space
        windows = _shifted(state.observation, state.action, state.mask, self._preprocess_numpy(obs),
                           np.asarray(action, np.float32).reshape(len(obs), self.act_dim),
                           np.asarray(space.low, np.float32).ravel(), np.asarray(space.high, np.float32).ravel())
        actor = (self.policy_snapshot() if nets is None else nets)["actor"]
        runs = state.runs_of(actor)
        if runs is not None:
            h, c = actor.advance_runs(runs.h, runs.c, windows[0][:, -1], windows[1][:, -1])
        else:
            h, c = actor.runs(*windows)
        return HistoryState(*windows, MemoryRuns(actor, actor.version, h, c))

    def check_state(self, state: Any, batch_size: int) -> HistoryState:
        if not isinstance(state, HistoryState) or state.mask.shape != (batch_size, self.history_length):
            shape = f" of shape {state.mask.shape}" if isinstance(state, HistoryState) else ""
            raise ValueError(f"LSTMTD3.act needs a state from initial_state({batch_size}) or a previous act "
                             f"for {batch_size} observation(s) and history_length {self.history_length}, "
                             f"got {type(state).__name__}{shape}.")
        return state

    def _select(self, nets: dict, obs: np.ndarray, state: HistoryState, deterministic: bool,
                rng: np.random.Generator) -> np.ndarray:
        actor, x = nets["actor"], self._preprocess_numpy(obs)
        runs = state.runs_of(actor)
        if runs is not None:
            unit_action = actor.from_runs(x, runs.h[:, 0])
        else:
            unit_action = actor(x, state.observation, state.action, state.mask)
        return self.scale_action(unit_action).reshape((len(obs),) + self.action_space.shape)

    def policy_step(self, observation: Any, history_observation: Any, history_action: Any,
                    history_mask: Any) -> dict[str, Any]:
        """One deterministic step in Keras ops, the state in and out (what `export_policy` writes).

        Returns `action` (environment units) and `next_history_observation`,
        `next_history_action`, `next_history_mask`: the state `act` returns, as
        tensors (output names differ from input names, which ONNX requires).
        """
        x = self.preprocess(observation)
        state = {"history_observation": history_observation, "history_action": history_action,
                 "history_mask": history_mask}
        inputs = {"observation": x}
        if self.history_length:
            inputs.update(history_observation=history_observation, history_mask=history_mask)
            if self.use_past_actions:
                inputs["history_action"] = history_action
        unit_action = ops.cast(self.actor(inputs), "float32")
        if self.history_length:
            step = lambda window, value: ops.concatenate([window[:, 1:], ops.expand_dims(value, 1)], axis=1)
            state = {"history_observation": step(history_observation, x),
                     "history_action": step(history_action, unit_action),
                     "history_mask": step(history_mask, ops.ones_like(x[:, 0], dtype="bool"))}
        return {"action": self._box_action(unit_action), **{f"next_{name}": value for name, value in state.items()}}

    def act(self, observation: Any, state: HistoryState | None = None, deterministic: bool = False,
            rng: np.random.Generator | None = None, epsilon: float | None = None,
            noise: np.ndarray | None = None) -> tuple[np.ndarray, HistoryState]:
        """Actions for one observation or a batch, and the state after them.

        Args:
            observation: one observation, or a batch with a leading axis.
            state: from `initial_state()` or the previous `act`; None starts
                an episode.
            deterministic: no action noise.
            epsilon: not for Box actions (an error, as for every agent).
            noise: action noise in [-1, 1] units, one row per observation.

        Returns:
            `(action, state)`: the action (or batch) scaled to the Box bounds,
            and the history that includes this step (with the noisy action).
        """
        return self._act_with(self.policy_snapshot(), observation, deterministic, rng, epsilon, noise, state=state)

    # ----------------------------------------------------------------- config
    def get_config(self) -> dict:
        config = super().get_config()
        config.update(history_length=self.history_length, memory_hidden=list(self.memory_hidden),
                      lstm_units=self.lstm_units, memory_after=list(self.memory_after),
                      feature_hidden=list(self.feature_hidden), use_past_actions=self.use_past_actions)
        return config
