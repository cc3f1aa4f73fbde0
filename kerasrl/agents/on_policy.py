"""The base of agents that learn from fresh rollouts of their own policy (RolloutDataset)."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from kerasrl import returns
from kerasrl._threads import keep_thread_state
from kerasrl.agents.base import Agent
from kerasrl.networks import NumpyMLP, backing_variable, read_numpy

LOG_2PI = math.log(2.0 * math.pi)


class OnPolicyAgent(Agent):
    """An agent with a stochastic policy head and a value head, trained on rollouts.

    Discrete actions: a categorical policy over the head's logits. Box
    actions: a Gaussian in [-1, 1] units of the Box with a state-independent
    `log_std` (a variable, as in Stable-Baselines3); the sample goes to the
    environment clipped to the bounds, and the unclipped sample is what the
    log-probabilities are taken of.

    Normalisation (Stable-Baselines3's VecNormalize, kept in the agent so
    the `.keras` file and the exported policy carry it):
    `normalize_observations` standardises each observation entry by the
    running mean and variance of the observations collected so far, clipped
    to ±`clip_observations`; `normalize_rewards` divides the rewards learnt
    from by the running standard deviation of the discounted return, clipped
    to ±`clip_rewards` (the logged episode returns stay raw). The statistics
    move once per rollout, after it is collected: a rollout is acted on and
    learnt from with the same normalisation.

    Subclasses give `_heads(x)` (Keras ops) and `_numpy_heads(nets, x)`
    (numpy, on the acting snapshot), both returning `(policy_output, value)`
    of the network input x, and `rollout_defaults`, `rollout_fields`,
    `rollout_targets` and `update`. A minibatch's `observation` is already
    the network input (preprocessed and normalised as the policy saw it).
    """

    def __init__(self, observation_space: Any, action_space: Any, log_std_init: float = 0.0,
                 normalize_observations: bool = False, normalize_rewards: bool = False,
                 clip_observations: float = 10.0, clip_rewards: float = 10.0, **kwargs: Any):
        super().__init__(observation_space, action_space, **kwargs)
        self.act_dim = int(self.action_space.n) if self.discrete else int(np.prod(self.action_space.shape))
        self.log_std_init = float(log_std_init)
        if not self.discrete:
            self.log_std = keras.Variable(np.full(self.act_dim, self.log_std_init, np.float32), name="log_std")
        self.normalize_observations = bool(normalize_observations)
        self.normalize_rewards = bool(normalize_rewards)
        self.clip_observations = float(clip_observations)
        self.clip_rewards = float(clip_rewards)
        statistic = lambda name, value: keras.Variable(value, dtype="float32", trainable=False, name=name)
        # Running moments (Chan et al.'s parallel update), starting like SB3's RunningMeanStd.
        self.observation_mean = statistic("observation_mean", np.zeros(self.obs_dim, np.float32))
        self.observation_var = statistic("observation_var", np.ones(self.obs_dim, np.float32))
        self.observation_count = statistic("observation_count", 1e-4)
        self.return_var = statistic("return_var", 1.0)
        self.return_count = statistic("return_count", 1e-4)
        self.return_mean = statistic("return_mean", 0.0)

    # --------------------------------------------------------- normalisation
    def preprocess(self, observation: Any) -> Any:
        """Raw observations -> the network input (normalised when `normalize_observations`)."""
        x = super().preprocess(observation)
        if not self.normalize_observations:
            return x
        x = (x - self.observation_mean) / ops.sqrt(self.observation_var + 1e-8)
        return ops.clip(x, -self.clip_observations, self.clip_observations)

    def network_input(self, nets: dict, observation: np.ndarray) -> np.ndarray:
        """Raw observations -> the network input, in numpy with the snapshot's statistics."""
        x = self._preprocess_numpy(observation)
        normalizer = nets.get("observation_normalizer")
        return x if normalizer is None else normalizer(x)

    def _select(self, nets: dict, obs: np.ndarray, state: Any, deterministic: bool,
                rng: np.random.Generator) -> np.ndarray:
        return self._policy(self.network_input(nets, obs), deterministic, rng, nets)

    def _numpy_policy(self) -> dict:
        nets = super()._numpy_policy()
        if self.normalize_observations:
            nets["observation_normalizer"] = ObservationNormalizer(self)
        if not self.discrete:
            nets["log_std"] = LogStdCopy(self)
        return nets

    def snapshot_variables(self) -> list[Any]:
        """The variables the numpy acting snapshot copies, in the order `refresh_policy(values)` takes them."""
        variables = [w for net in self.policy_networks().values() if NumpyMLP.supports(net) for w in net.weights]
        return variables if self.discrete else variables + [self.log_std]

    def refresh_policy(self, values: list[np.ndarray] | None = None) -> None:
        """Copies the current policy weights into the acting snapshot, or the `snapshot_variables` values given.

        The train function reads the values in the compiled loop after the
        update and hands them over with the call that collects the next
        rollout: 12 eager reads of A2C's weights cost ~190 µs a rollout.
        (The observation statistics move only in `update_statistics`, which
        renews their copy itself.)
        """
        if values is None or self._snapshot is None:
            return super().refresh_policy()
        start = 0
        for net in self._snapshot.values():
            if isinstance(net, NumpyMLP):
                count = len(net.model.weights)
                net.refresh(list(values[start:start + count]))
                start += count
        if not self.discrete:
            self._snapshot["log_std"].refresh(values[start])

    def update_statistics(self, observations: np.ndarray, discounted_returns: np.ndarray) -> None:
        """Moves the running moments by a rollout's raw (preprocessed) observations and discounted returns."""
        if self.normalize_observations and len(observations):
            _merge_moments(self.observation_mean, self.observation_var, self.observation_count, observations)
            if self._snapshot is not None:  # act sees the new statistics at once (the next rollout would)
                self._snapshot["observation_normalizer"].refresh()
        if self.normalize_rewards and discounted_returns.size:
            _merge_moments(self.return_mean, self.return_var, self.return_count, discounted_returns.reshape(-1, 1))

    def reward_scale(self) -> float:
        """What rewards are divided by before learning (1 without `normalize_rewards`)."""
        return float(np.sqrt(read_numpy(self.return_var) + 1e-8)) if self.normalize_rewards else 1.0

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

    def make_train_function(self, force: bool = False) -> Any:
        """Keras' multi-step train function, fetching each minibatch from the RolloutDataset being fit.

        fit iterates the dataset's tickets (one per train step, so epochs and
        `steps_per_execution` work as in Keras); the minibatch of each step
        comes from the dataset by one numpy call inside the compiled loop.
        While a step runs, the next minibatch of the same rollout is already
        fetched (`pop_pending`); a new rollout (`next_rollout_batch`) is
        collected only once the step has run, so it acts with the weights of
        every update before it. When each rollout is one minibatch (A2C), every
        step collects and nothing is popped.

        When every minibatch of the dataset has the same size, the step is
        traced for that size (a batch dimension of None made PPO's step ~40%
        slower on CPU); a fit on a dataset of another size traces it anew.
        """
        from kerasrl.rollout import RolloutDataset, rollout_fields

        if not isinstance(self.env_dataset, RolloutDataset):
            raise ValueError(f"{type(self).__name__} trains by fit on a RolloutDataset or an environment, "
                             f"got {type(self.env_dataset).__name__ if self.env_dataset else 'other data'}.")
        rows = self.env_dataset.fixed_batch_size()
        one_batch_per_rollout = self.env_dataset.batches_per_rollout() == 1
        if self.train_function is not None and not force and (rows, one_batch_per_rollout) == self._traced_for:
            return self.train_function
        step = tf.function(self.train_step, reduce_retracing=True, jit_compile=bool(self.jit_compile), autograph=False)
        steps_per_execution = self.steps_per_execution
        fields = [(name, dtype, (rows,) + shape[1:]) for name, dtype, shape in rollout_fields(self)]
        width = sum(math.prod(shape[1:]) for _, _, shape in fields)
        spec = {name: tf.TensorSpec(shape, dtype) for name, dtype, shape in fields}
        spec.update(episode_return=tf.TensorSpec((), tf.float32), episode_length=tf.TensorSpec((), tf.float32),
                    env_steps=tf.TensorSpec((), tf.int64))
        dataset = lambda: self.env_dataset  # the one fit is iterating now (the function outlives a fit)
        acting_variables = self.snapshot_variables()

        def unpack(packed: Any, stats: Any) -> dict[str, Any]:
            packed = tf.ensure_shape(packed, (rows, width))  # (a minibatch of another size fails here, by name)
            batch, column = {}, 0
            for name, dtype, shape in fields:
                columns = math.prod(shape[1:])
                value = packed[:, column:column + columns]
                batch[name] = tf.cast(tf.reshape(value, (-1,) + shape[1:]), dtype)
                column += columns
            batch["episode_return"] = tf.cast(stats[0], tf.float32)
            batch["episode_length"] = tf.cast(stats[1], tf.float32)
            batch["env_steps"] = tf.cast(stats[2], tf.int64)
            return batch

        def pop_pending() -> tuple[np.ndarray, np.ndarray, bool]:
            keep_thread_state()
            return dataset().pop_pending()

        def next_rollout_batch(*weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            keep_thread_state()
            return dataset().next_rollout_batch(weights)

        def fetch(after: list) -> tuple[Any, Any]:
            def collect() -> tuple[Any, Any]:
                with tf.control_dependencies(after):  # the rollout acts with the weights the step writes
                    weights = [tf.convert_to_tensor(backing_variable(v)) for v in acting_variables]
                    return tuple(tf.numpy_function(next_rollout_batch, weights, [tf.float64, tf.float64],
                                                   stateful=True))

            if one_batch_per_rollout:  # (A2C) nothing is ever pending: every step collects
                packed, stats = collect()
            else:
                packed, stats, ready = tf.numpy_function(pop_pending, [], [tf.float64, tf.float64, tf.bool],
                                                         stateful=True)
                packed, stats = tf.cond(ready, lambda: (tf.identity(packed), tf.identity(stats)), collect)
            packed.set_shape((None, None))
            stats.set_shape((3,))
            return packed, stats

        @tf.function(reduce_retracing=True, autograph=False)
        def run_steps(iterator: Any) -> tuple[Any, Any]:
            outputs = step.get_concrete_function(spec).structured_outputs
            logs = tf.nest.map_structure(lambda t: tf.zeros(t.shape, t.dtype), outputs)

            def body(i: Any, ran: Any, logs: Any, packed: Any, stats: Any, ticket: Any) -> tuple:
                logs = step(unpack(packed, stats))
                ran_ops = [t.op for t in tf.nest.flatten(logs)]  # a control edge waits for all its side effects
                ticket = tf.cond(i + 1 < steps_per_execution, iterator.get_next_as_optional, lambda: ticket)
                packed, stats = tf.cond(tf.logical_and(i + 1 < steps_per_execution, ticket.has_value()),
                                        lambda: fetch(ran_ops), lambda: (packed, stats))
                with tf.control_dependencies(ran_ops):
                    return i + 1, tf.constant(True), tf.nest.map_structure(tf.identity, logs), packed, stats, ticket

            ticket = iterator.get_next_as_optional()
            packed, stats = tf.cond(ticket.has_value(), lambda: fetch([]),
                                    lambda: (tf.zeros((0, 0), tf.float64), tf.zeros((3,), tf.float64)))
            _, ran, logs, *_ = tf.while_loop(
                lambda i, ran, logs, packed, stats, ticket: tf.logical_and(i < steps_per_execution, ticket.has_value()),
                body, [tf.constant(0), tf.constant(False), logs, packed, stats, ticket], parallel_iterations=1)
            return ran, logs

        def train_function(iterator: Any) -> Any:
            ran, logs = run_steps(iterator)
            if not ran:
                raise StopIteration
            return logs

        self.train_function = train_function
        self._traced_for = (rows, one_batch_per_rollout)
        return train_function

    _traced_for: tuple[int | None, bool] | None = None  # (minibatch rows, one minibatch a rollout)

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
        log_std, std = nets["log_std"].log_std, nets["log_std"].std
        raw = out + std * rng.standard_normal(out.shape).astype(np.float32)
        log_prob = np.sum(-0.5 * np.square((raw - out) / std) - log_std - 0.5 * LOG_2PI, axis=-1)
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
        config.update(log_std_init=self.log_std_init, normalize_observations=self.normalize_observations,
                      normalize_rewards=self.normalize_rewards, clip_observations=self.clip_observations,
                      clip_rewards=self.clip_rewards)
        return config


class ObservationNormalizer:
    """The numpy copy of an agent's observation statistics, renewed with the acting snapshot."""

    def __init__(self, agent: OnPolicyAgent):
        self.agent = agent
        self.refresh()

    def refresh(self) -> None:
        self.mean = read_numpy(self.agent.observation_mean)
        self.std = np.sqrt(read_numpy(self.agent.observation_var) + 1e-8)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        clip = self.agent.clip_observations
        return np.clip((x - self.mean) / self.std, -clip, clip).astype(np.float32)


class LogStdCopy:
    """The numpy copy of a Gaussian policy's log standard deviation, renewed with the acting snapshot.

    (An eager read of the variable at every step cost ~9 µs, a quarter of a
    small policy's step.)
    """

    def __init__(self, agent: OnPolicyAgent):
        self.agent = agent
        self.refresh()

    def refresh(self, log_std: np.ndarray | None = None) -> None:
        self.log_std = read_numpy(self.agent.log_std) if log_std is None else log_std
        self.std = np.exp(self.log_std)


def _merge_moments(mean: Any, var: Any, count: Any, batch: np.ndarray) -> None:
    """Folds a batch's mean and variance into running ones (Chan et al. 1979)."""
    batch = np.asarray(batch, np.float64)
    old_mean, old_var, old_count = (read_numpy(v).astype(np.float64) for v in (mean, var, count))
    batch_mean, batch_var, batch_count = batch.mean(axis=0), batch.var(axis=0), len(batch)
    total = old_count + batch_count
    delta = batch_mean - old_mean
    new_var = (old_var * old_count + batch_var * batch_count + delta ** 2 * old_count * batch_count / total) / total
    mean.assign(np.asarray(old_mean + delta * batch_count / total, np.float32).reshape(mean.shape))
    var.assign(np.asarray(new_var, np.float32).reshape(var.shape))
    count.assign(np.float32(total))


def explained_variance(values: np.ndarray, targets: np.ndarray) -> float:
    """1 − Var(targets − values) / Var(targets): 1 is a perfect value function, 0 no better than a constant."""
    variance = np.var(targets)
    return float("nan") if variance == 0 else float(1.0 - np.var(targets - values) / variance)


class GAEAgent(OnPolicyAgent):
    """The common part of A2C and PPO: policy and value networks, GAE(λ) targets, SB3's names.

    Networks: by default two MLPs, policy and value, with orthogonal
    initialisation (gain √2 in the hidden layers, 0.01 for the policy's
    output, 1 for the value's), as Stable-Baselines3 builds them;
    `shared_network=True` gives one torso with two heads instead.
    """

    metric_names = ("loss", "policy_loss", "value_loss", "entropy_loss", "entropy", "explained_variance")

    def __init__(
        self,
        observation_space: Any,
        action_space: Any,
        n_steps: int,
        batch_size: int | None,
        n_epochs: int,
        gamma: float,
        gae_lambda: float,
        ent_coef: float,
        vf_coef: float,
        max_grad_norm: float | None,
        normalize_advantage: bool,
        hidden: Any,
        activation: str,
        shared_network: bool,
        log_std_init: float,
        seed: int | None,
        **kwargs: Any,
    ):
        super().__init__(observation_space, action_space, gamma=gamma, seed=seed, log_std_init=log_std_init, **kwargs)
        if not 0.0 <= gae_lambda <= 1.0:
            raise ValueError(f"gae_lambda must be in [0, 1], got {gae_lambda}.")
        self.n_steps = int(n_steps)
        self.batch_size = None if batch_size is None else int(batch_size)
        self.n_epochs = int(n_epochs)
        self.gae_lambda = float(gae_lambda)
        self.ent_coef = float(ent_coef)
        self.vf_coef = float(vf_coef)
        self.max_grad_norm = None if max_grad_norm is None else float(max_grad_norm)
        self.normalize_advantage = bool(normalize_advantage)
        self.hidden = tuple(int(h) for h in hidden)
        self.activation = activation
        self.shared_network = bool(shared_network)
        init = lambda i, gain: keras.initializers.Orthogonal(gain, seed=None if seed is None else seed * 100 + i)
        dense = lambda units, i, gain, act=None, dtype=self.dtype_policy: keras.layers.Dense(
            units, activation=act, kernel_initializer=init(i, gain), dtype=dtype)
        stack = lambda name, first, inputs: keras.Sequential(
            [keras.Input((inputs,))] + [dense(u, first + i, 2 ** 0.5, activation) for i, u in enumerate(self.hidden)],
            name=name)
        head = lambda name, units, i, gain, inputs: keras.Sequential(
            [keras.Input((inputs,)), dense(units, i, gain, dtype="float32")], name=name)
        width = self.hidden[-1] if self.hidden else self.obs_dim
        if self.shared_network:
            self.torso = stack("torso", 0, self.obs_dim)
            nets = [self.torso]
        else:
            nets = [stack("policy_torso", 0, self.obs_dim), stack("value_torso", 20, self.obs_dim)]
            self.policy_torso, self.value_torso = nets
        self.policy_head = head("policy_head", self.act_dim, 40, 0.01, width)
        self.value_head = head("value_head", 1, 41, 1.0, width)
        self.built = True

    def policy_networks(self) -> dict[str, keras.Model]:
        names = ("torso",) if self.shared_network else ("policy_torso", "value_torso")
        return {name: getattr(self, name) for name in names + ("policy_head", "value_head")}

    def optimizer_roles(self) -> dict[str, list]:
        return {"network": self.trainable_variables}

    def _heads(self, x: Any) -> tuple[Any, Any]:
        if self.shared_network:
            features = self.torso(x)
            return self.policy_head(features), ops.squeeze(self.value_head(features), -1)
        return self.policy_head(self.policy_torso(x)), ops.squeeze(self.value_head(self.value_torso(x)), -1)

    def _numpy_heads(self, nets: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.shared_network:
            features = nets["torso"](x)
            return nets["policy_head"](features), nets["value_head"](features)[:, 0]
        return nets["policy_head"](nets["policy_torso"](x)), nets["value_head"](nets["value_torso"](x))[:, 0]

    # -------------------------------------------------------------- rollouts
    def rollout_defaults(self) -> dict[str, Any]:
        return {"n_steps": self.n_steps, "batch_size": self.batch_size, "n_epochs": self.n_epochs}

    def rollout_fields(self) -> tuple[str, ...]:
        return ("observation", "action", "log_prob", "value", "advantage", "value_target", "explained_variance")

    def rollout_targets(self, rollout: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        advantage, value_target = returns.gae(rollout["reward"], rollout["value"], rollout["next_value"],
                                              rollout["terminated"], rollout["truncated"], self.gamma,
                                              self.gae_lambda)
        valid = rollout["valid"]
        ev = explained_variance(rollout["value"][valid], value_target[valid])
        return {"advantage": advantage, "value_target": value_target,
                "explained_variance": np.full(valid.shape, ev, np.float32)}

    def _advantages(self, batch: dict[str, Any]) -> Any:
        advantage = batch["advantage"]
        if self.normalize_advantage:
            advantage = (advantage - ops.mean(advantage)) / (ops.std(advantage) + 1e-8)
        return advantage

    def _apply(self, tape: Any, loss: Any, skip: Any = False) -> None:
        """The gradient step of the whole network, clipped to `max_grad_norm`; none where `skip` holds."""
        variables = self.optimizer_roles()["network"]
        grads = tape.gradient(loss, variables)
        if self.max_grad_norm:
            grads, _ = tf.clip_by_global_norm(grads, self.max_grad_norm)
        step = lambda: self.network_optimizer.apply_gradients(zip(grads, variables))
        if skip is False:
            step()
        else:
            tf.cond(skip, lambda: tf.constant(False), lambda: (step(), tf.constant(True))[1])

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(n_steps=self.n_steps, batch_size=self.batch_size, n_epochs=self.n_epochs,
                      gae_lambda=self.gae_lambda, ent_coef=self.ent_coef, vf_coef=self.vf_coef,
                      max_grad_norm=self.max_grad_norm, normalize_advantage=self.normalize_advantage,
                      hidden=list(self.hidden), activation=self.activation, shared_network=self.shared_network)
        for key in ("tau", "target_update_interval"):
            config.pop(key)
        return config
