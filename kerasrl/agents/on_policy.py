"""The base of agents that learn from fresh rollouts of their own policy (RolloutDataset)."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from kerasrl.agents.base import Agent
from kerasrl.networks import read_numpy

LOG_2PI = math.log(2.0 * math.pi)


class OnPolicyAgent(Agent):
    """An agent with a stochastic policy head and a value head, trained on rollouts.

    Discrete actions: a categorical policy over the head's logits. Box
    actions: a Gaussian in [-1, 1] units of the Box with a state-independent
    `log_std` (a variable, as in Stable-Baselines3); the sample goes to the
    environment clipped to the bounds, and the unclipped sample is what the
    log-probabilities are taken of.

    Subclasses give `_heads(x)` (Keras ops) and `_numpy_heads(nets, x)`
    (numpy, on the acting snapshot), both returning `(policy_output, value)`,
    and `rollout_defaults`, `rollout_fields`, `rollout_targets` and `update`.
    """

    def __init__(self, observation_space: Any, action_space: Any, log_std_init: float = 0.0, **kwargs: Any):
        super().__init__(observation_space, action_space, **kwargs)
        self.act_dim = int(self.action_space.n) if self.discrete else int(np.prod(self.action_space.shape))
        self.log_std_init = float(log_std_init)
        if not self.discrete:
            self.log_std = keras.Variable(np.full(self.act_dim, self.log_std_init, np.float32), name="log_std")

    # ------------------------------------------------------------- rollouts
    def rollout_defaults(self) -> dict[str, Any]:
        """The RolloutDataset settings this agent's hyperparameters give."""
        raise NotImplementedError

    def rollout_fields(self) -> tuple[str, ...]:
        """The per-sample fields `update` reads from a minibatch."""
        raise NotImplementedError

    def rollout_targets(self, rollout: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Returns and advantages of a rollout's (T, N) arrays (see `kerasrl.returns`)."""
        raise NotImplementedError

    def default_dataset(self, env: Any) -> Any:
        from kerasrl.rollout import RolloutDataset

        return RolloutDataset(env, self)

    # ---------------------------------------------------------------- policy
    def _heads(self, x: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def _numpy_heads(self, nets: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _rollout_select(self, nets: dict, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        """Sampled environment actions for a preprocessed batch, and V(s), log π(a|s) (and the raw Box sample)."""
        out, value = self._numpy_heads(nets, x)
        if self.discrete:
            log_pi = out - out.max(axis=-1, keepdims=True)
            log_pi -= np.log(np.exp(log_pi).sum(axis=-1, keepdims=True))
            gumbel = -np.log(-np.log(rng.uniform(1e-12, 1.0, size=out.shape)))
            index = (out + gumbel).argmax(axis=-1)
            extras = {"value": value, "log_prob": np.take_along_axis(log_pi, index[:, None], axis=-1)[:, 0]}
            return index + self.action_space.start, extras
        log_std = read_numpy(self.log_std)
        raw = out + np.exp(log_std) * rng.standard_normal(out.shape).astype(np.float32)
        log_prob = np.sum(-0.5 * np.square((raw - out) / np.exp(log_std)) - log_std - 0.5 * LOG_2PI, axis=-1)
        extras = {"value": value, "log_prob": log_prob.astype(np.float32), "raw_action": raw.astype(np.float32)}
        return self._env_action(raw), extras

    def _rollout_values(self, nets: dict, x: np.ndarray) -> np.ndarray:
        return self._numpy_heads(nets, x)[1]

    def _env_action(self, unit: np.ndarray) -> np.ndarray:
        return self.scale_action(np.clip(unit, -1.0, 1.0)).reshape((len(unit),) + self.action_space.shape)

    def _policy(self, obs: np.ndarray, deterministic: bool, rng: np.random.Generator, nets: dict) -> np.ndarray:
        if not deterministic:
            return self._rollout_select(nets, obs, rng)[0]
        out, _ = self._numpy_heads(nets, obs)
        return out.argmax(axis=-1) + self.action_space.start if self.discrete else self._env_action(out)

    def _deterministic_action(self, x: Any) -> Any:
        out, _ = self._heads(x)
        return self._greedy_action(out) if self.discrete else self._box_action(ops.clip(out, -1.0, 1.0))

    def log_prob_and_entropy(self, out: Any, action: Any) -> tuple[Any, Any]:
        """log π(a|s) of the batch's actions and the policy's entropy, per sample."""
        if self.discrete:
            log_pi = ops.log_softmax(out, axis=-1)
            index = ops.cast(ops.reshape(action, (-1,)), "int32") - self.action_space.start
            log_prob = ops.take_along_axis(log_pi, index[:, None], axis=-1)[:, 0]
            return log_prob, -ops.sum(ops.exp(log_pi) * log_pi, axis=-1)
        log_std = ops.convert_to_tensor(self.log_std)
        action = ops.reshape(ops.cast(action, "float32"), (-1, self.act_dim))
        log_prob = ops.sum(-0.5 * ops.square((action - out) / ops.exp(log_std)) - log_std - 0.5 * LOG_2PI, axis=-1)
        entropy = ops.sum(log_std + 0.5 * (LOG_2PI + 1.0)) * ops.ones_like(log_prob)
        return log_prob, entropy

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(log_std_init=self.log_std_init)
        return config
