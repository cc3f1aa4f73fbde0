"""The Agent base class: a keras.Model whose train_step is one learning update."""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf
from keras import ops

from kerasrl import acting, spaces
from kerasrl.networks import NumpyMLP

# Keys a batch from an EnvDataset carries besides the transitions; train_step
# passes them to the logs so History, the progress bar and CSVLogger see them.
ENV_LOG_KEYS = ("episode_return", "episode_length", "env_steps", "exploration_rate")
# Updates per compiled call when compile is not told otherwise: the setting every benchmark
# runs with. At Keras' own default (1) each update pays the fit loop's per-call cost (~2.5
# ms here: callbacks, logs, the iterator): SAC Pendulum-v1 ran 245 env steps/s that way
# against 363 at 50, DQN LunarLander-v3 608 against 1125.
DEFAULT_STEPS_PER_EXECUTION = 50
# Per-sample |TD error| an update may return; train_step hands it to the
# prioritized buffer (through PriorityRefresh's TDErrorLog) instead of logging it.
TD_ERRORS_KEY = "td_errors"


class Agent(keras.Model):
    """Base class of kerasrl agents.

    An agent is a `keras.Model` built from a gymnasium observation space and
    action space (Box or Discrete). Its `train_step` performs one learning update
    on a replay batch, so training is `agent.fit(env_dataset, callbacks=...)`.

    Subclasses implement:
      * `update(batch)`: the learning update; returns a dict of scalar metrics
        whose names are listed in `metric_names`.
      * `target_pairs()`: `(online, target)` networks that target updates blend.
      * `optimizer_roles()`: `{role: variables}`; `compile` builds one optimizer
        per role, available as `agent.<role>_optimizer`.
      * `_policy(obs, deterministic, rng, nets)`: numpy acting on a batch of
        preprocessed observations, with `nets` the numpy snapshot of
        `policy_networks()`. Exploration (epsilon-greedy, action noise) is
        not the policy's business: `kerasrl.acting` wraps it around.

    Replay batches may carry, besides the transitions, `discount` (n-step
    buffers: gamma^m per transition) and `weight` (prioritized buffers:
    importance-sampling weights); updates use them when present and may
    return per-sample `td_errors` for the buffer's priorities.

    Target networks: the blend `target <- tau * online + (1 - tau) * target`
    runs inside the compiled train step every `every` gradient steps, so it is
    exact whatever `steps_per_execution` is. `kerasrl.callbacks.SoftTargetUpdate`
    and `HardTargetUpdate` set tau and every; when `fit` is given neither, it
    adds `default_target_update()`, so a forgotten callback never freezes the
    targets.

    Counters: `num_gradient_steps` and `num_env_steps` are variables, saved in
    `.keras` files.

    Precision: `dtype="mixed_bfloat16"` (or Keras' global
    `keras.config.set_dtype_policy("mixed_bfloat16")`) runs the hidden layers
    in bfloat16 with float32 variables; output layers, losses and targets stay
    float32, and acting stays float32. On CPUs with AVX512-BF16 this made the
    TD3 update ~1.25x faster here (see the README's benchmark table).
    """

    metric_names: tuple[str, ...] = ("loss",)
    # Agents with memory carry a state between steps: `act(obs, state=...)` returns
    # `(action, state)`, and they provide initial_state, reset_state, advance_state (checked;
    # `_advance_state(state, obs, action, nets)` skips the check for batches act or the loop already
    # checked, and may keep work for the next step of the numpy policy `nets`) and check_state.
    stateful: bool = False
    history_length: int = 0  # past steps each replay batch must carry (ReplayBuffer(history_length=...))
    # Box observations are flattened for MLPs; image torsos keep their shape.
    flatten_observations: bool = True

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        gamma: float = 0.99,
        tau: float = 0.005,
        target_update_interval: int = 1,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.observation_space = spaces.check_space(observation_space, "observation")
        self.action_space = spaces.check_space(action_space, "action")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}.")
        self.gamma = float(gamma)
        self.tau = float(tau)
        self.target_update_interval = int(target_update_interval)
        self.seed = seed
        self.obs_dim = spaces.flat_dim(self.observation_space)
        self.num_gradient_steps = keras.Variable(0, dtype="int64", trainable=False, name="num_gradient_steps")
        self.num_env_steps = keras.Variable(0, dtype="int64", trainable=False, name="num_env_steps")
        self.target_tau = keras.Variable(self.tau, dtype="float32", trainable=False, name="target_tau")
        self.target_every = keras.Variable(self.target_update_interval, dtype="int64", trainable=False, name="target_every")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.metric_names}
        self._act_rng = np.random.default_rng(seed)
        self._snapshot: dict | None = None
        self._compiled_policy: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
        self._td_log: Any = None  # a callbacks.priority.TDErrorLog, set by PriorityRefresh

    # ------------------------------------------------------------------ spaces
    @classmethod
    def from_env(cls, env: gym.Env | Any, **kwargs: Any) -> "Agent":
        """Builds the agent from an environment's spaces (vector envs too)."""
        obs_space = getattr(env, "single_observation_space", env.observation_space)
        act_space = getattr(env, "single_action_space", env.action_space)
        return cls(obs_space, act_space, **kwargs)

    @property
    def discrete(self) -> bool:
        return isinstance(self.action_space, gym.spaces.Discrete)

    def preprocess(self, observation: Any) -> Any:
        """Observation batch -> float32 network input (one-hot for Discrete)."""
        if isinstance(self.observation_space, gym.spaces.Discrete):
            return ops.one_hot(ops.cast(observation, "int32") - self.observation_space.start, self.obs_dim)
        if not self.flatten_observations:
            return ops.cast(observation, "float32")
        return ops.reshape(ops.cast(observation, "float32"), (-1, self.obs_dim))

    def _preprocess_numpy(self, observation: np.ndarray) -> np.ndarray:
        if isinstance(self.observation_space, gym.spaces.Discrete):
            return np.eye(self.obs_dim, dtype=np.float32)[observation - self.observation_space.start]
        if not self.flatten_observations:
            return observation.astype(np.float32, copy=False)
        return observation.reshape(len(observation), self.obs_dim).astype(np.float32, copy=False)

    # Box actions: networks work in [-1, 1]; the environment sees [low, high].
    def scale_action(self, unit_action: np.ndarray) -> np.ndarray:
        return spaces.unit_to_box(self.action_space, unit_action)

    def unscale_action(self, action: Any) -> Any:
        low = ops.convert_to_tensor(self.action_space.low, "float32")
        high = ops.convert_to_tensor(self.action_space.high, "float32")
        return 2.0 * (ops.cast(action, "float32") - low) / (high - low) - 1.0

    # ------------------------------------------------------------------ acting
    def policy_networks(self) -> dict[str, keras.Model]:
        raise NotImplementedError

    def _policy(self, obs: np.ndarray, deterministic: bool, rng: np.random.Generator, nets: dict) -> np.ndarray:
        raise NotImplementedError

    def _select(self, nets: dict, obs: np.ndarray, state: Any, deterministic: bool,
                rng: np.random.Generator) -> np.ndarray:
        """Actions for a checked batch of raw observations (`state`: the agent's, if stateful)."""
        return self._policy(self._preprocess_numpy(obs), deterministic, rng, nets)

    def default_exploration(self) -> Any:
        """The epsilon schedule an EnvDataset collects with (None: not epsilon-greedy)."""
        return None

    def default_action_noise(self) -> Any:
        """The `kerasrl.noise` an EnvDataset adds to actions (None: the policy explores by itself)."""
        return None

    def policy_snapshot(self) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
        """Numpy copies of the policy networks that `act` runs.

        Acting through numpy costs ~15 µs per observation against ~0.5 ms for a
        tf.function call; networks that are not plain Dense stacks fall back to
        a compiled call. The copy is made on first use and renewed by
        `refresh_policy()`: by the EnvDataset during fit (every
        `policy_sync_every` batches) and whenever fit, `load_weights`,
        `set_weights` or `train_on_batch` may have changed the weights.
        """
        if self._snapshot is None:
            self._snapshot = self._numpy_policy()
        return self._snapshot

    def _numpy_policy(self) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
        """A new numpy copy of the policy networks, as they are now.

        Networks that are not Dense stacks run through a compiled call on the
        live variables instead, traced once per agent.
        """
        nets = {}
        for name, net in self.policy_networks().items():
            if NumpyMLP.supports(net):
                nets[name] = NumpyMLP(net)
            else:
                if name not in self._compiled_policy:
                    compiled = tf.function(lambda x, net=net: net(x, training=False))
                    self._compiled_policy[name] = lambda x, f=compiled: np.asarray(f(x))
                nets[name] = self._compiled_policy[name]
        return nets

    def refresh_policy(self) -> None:
        """Copies the current policy weights into the acting snapshot."""
        for net in (self._snapshot or {}).values():
            if hasattr(net, "refresh"):  # numpy copies; compiled calls read the live variables
                net.refresh()

    def _forget_policy(self) -> None:
        self._snapshot = None

    def load_weights(self, *args: Any, **kwargs: Any) -> None:
        super().load_weights(*args, **kwargs)
        self._forget_policy()

    def set_weights(self, weights: Any) -> None:
        super().set_weights(weights)
        self._forget_policy()

    def train_on_batch(self, *args: Any, **kwargs: Any) -> Any:
        self._forget_policy()
        return super().train_on_batch(*args, **kwargs)

    def act(self, observation: Any, deterministic: bool = False, rng: np.random.Generator | None = None,
            epsilon: float | None = None, noise: np.ndarray | None = None) -> np.ndarray:
        """Actions for one observation or a batch, in the environment's action space.

        Args:
            observation: one observation, or a batch with a leading axis.
            deterministic: the policy's mode instead of a sample.
            rng: numpy generator for the sampling (the agent's own by default).
            epsilon: epsilon-greedy exploration around the policy's mode
                (Discrete actions); ignored when deterministic.
            noise: action noise in [-1, 1] units, one row per observation,
                added to the policy's action (Box actions); ignored when
                deterministic.

        Returns:
            One action, or a batch of actions, scaled to the Box bounds.
        """
        return self._act_with(self.policy_snapshot(), observation, deterministic, rng, epsilon, noise)

    def _act_with(self, nets: dict, observation: Any, deterministic: bool = False,
                  rng: np.random.Generator | None = None, epsilon: float | None = None,
                  noise: np.ndarray | None = None, state: Any = None) -> Any:
        obs, single = spaces.check_batch(self.observation_space, observation, "observation")
        rng = self._act_rng if rng is None else rng
        if self.stateful:
            state = self.initial_state(len(obs)) if state is None else self.check_state(state, len(obs))
        actions = self._select(nets, obs, state, deterministic or epsilon is not None, rng)
        if not deterministic and epsilon is not None:
            actions = acting.epsilon_greedy(actions, epsilon, self.action_space, rng)
        if not deterministic and noise is not None:
            actions = acting.add_noise(actions, noise, self.action_space)
        if self.stateful:
            return (actions[0] if single else actions), self._advance_state(state, obs, actions, nets)
        return actions[0] if single else actions

    def _loop(self, env: Any, deterministic: bool, **single_env_options: Any) -> acting.EnvironmentLoop:
        """An environment loop acting with the weights as they are now (not the collector's snapshot)."""
        if isinstance(env, gym.vector.VectorEnv):
            raise ValueError(f"{type(self).__name__} runs whole episodes in one environment, not a vector env; "
                             "give it a gymnasium Env or an id.")
        policy = acting.AgentPolicy(self, deterministic, nets=self._numpy_policy())
        return acting.EnvironmentLoop(acting.vector_view(env, **single_env_options), policy)

    def evaluate_env(
        self,
        env: gym.Env | str,
        episodes: int = 10,
        seed: int | None = None,
        deterministic: bool = True,
        render: bool = False,
    ) -> np.ndarray:
        """Runs whole episodes with the policy; returns their undiscounted returns.

        Args:
            env: an environment or an environment id.
            episodes: the number of episodes.
            seed: seeds the first reset (later resets continue its generator).
            deterministic: act with the policy's mode (the default) or sample.
            render: call `env.render()` after every step.

        The episodes run on the weights as they are when it is called, also
        during fit (where collection acts with a copy a few updates old).
        """
        if int(episodes) < 1:
            raise ValueError(f"evaluate_env needs episodes >= 1, got {episodes}.")
        if isinstance(env, str):
            env = gym.make(env, render_mode="human" if render else None)
        loop = self._loop(env, deterministic, max_episodes=episodes,
                          render=(lambda e: e.render()) if render else None)
        returns, _ = loop.run_episodes(episodes, seed)
        return returns

    def play(
        self,
        env: gym.Env | str,
        episodes: int = 1,
        seed: int | None = None,
        deterministic: bool = True,
        video: str | None = None,
        fps: float | None = None,
    ) -> np.ndarray:
        """Runs whole episodes and shows them, or records them to a video file.

        Prints each episode's return and length.

        Args:
            env: an environment made with `render_mode="human"` (shown) or,
                with `video`, `render_mode="rgb_array"`; or an id, made so.
            episodes: the number of episodes.
            seed: seeds the first reset.
            deterministic: act with the policy's mode (the default) or sample.
            video: an .mp4 or .gif path to write every episode's frames to
                (needs `pip install 'kerasrl[video]'`).
            fps: frames per second of the video (the env's `render_fps` by default).

        Returns:
            The episodes' undiscounted returns.

        Example:

        ```python
        agent = keras.saving.load_model("runs/sac-pendulum/agent.keras")
        agent.play(gym.make("Pendulum-v1", render_mode="rgb_array"), episodes=2, seed=0,
                   video="pendulum.mp4")
        ```
        """
        if int(episodes) < 1:
            raise ValueError(f"play needs episodes >= 1, got {episodes}.")
        wanted = "rgb_array" if video is not None else "human"
        if video is not None:
            from kerasrl import video as video_module
            video_module.check_path(video)
        if isinstance(env, str):
            env = gym.make(env, render_mode=wanted)
        mode = getattr(env, "render_mode", None)
        if mode != wanted:
            how = f"record {video!r}" if video is not None else "show episodes (without video=...)"
            raise ValueError(f"play needs an environment made with render_mode={wanted!r} to {how}; "
                             f"this one has render_mode={mode!r}.")
        frames: list[np.ndarray] = []
        record = (lambda e: frames.append(e.render())) if video is not None else None
        loop = self._loop(env, deterministic, max_episodes=episodes, render=record)
        returns, lengths = loop.run_episodes(episodes, seed)
        for i, (value, length) in enumerate(zip(returns, lengths)):
            print(f"episode {i + 1}: return {value:.2f}, length {length}")
        if video is not None:
            rate = fps or env.metadata.get("render_fps") or 30
            video_module.write(video, frames, rate)
            print(f"Wrote {video} ({len(frames)} frames at {rate:g} fps)")
        return returns

    # ----------------------------------------------------------------- export
    def policy_action(self, observation: Any) -> Any:
        """The deterministic policy in Keras ops: raw observations -> environment actions.

        What `export_policy` writes; equal to `act(observation, deterministic=True)`
        on a batch (Discrete actions as int64).
        """
        return self._deterministic_action(self.preprocess(observation))

    def _deterministic_action(self, x: Any) -> Any:
        raise NotImplementedError

    def _greedy_action(self, scores: Any) -> Any:
        # tf.argmax, not ops.argmax: Keras' argmax adds a Bitcast that ONNX has no operator for.
        return tf.math.argmax(scores, axis=-1, output_type=tf.int64) + self.action_space.start

    def _box_action(self, unit_action: Any) -> Any:
        low = ops.convert_to_tensor(self.action_space.low.reshape(-1), "float32")
        high = ops.convert_to_tensor(self.action_space.high.reshape(-1), "float32")
        action = low + (ops.cast(unit_action, "float32") + 1.0) * 0.5 * (high - low)
        return ops.reshape(action, (-1,) + self.action_space.shape)

    def export_policy(self, path: str, format: str = "tf_saved_model", verbose: bool = False) -> str:
        """Writes the deterministic policy for serving outside Python's kerasrl.

        The artifact maps a batch of raw observations (any batch size, the
        environment's dtype) to a batch of environment actions, as
        `act(obs, deterministic=True)` returns them: Box actions scaled to
        the bounds, Discrete ones as int64. The preprocessing (one-hot
        Discrete observations, uint8 frames) is inside. See `kerasrl.export`
        for running it with each runtime.

        Args:
            path: a folder for "tf_saved_model", a file for "onnx" (.onnx)
                and "litert" (.tflite).
            format: "tf_saved_model" (signature `serving_default`, endpoint
                `serve`), "onnx" (needs `pip install 'kerasrl[onnx]'`) or
                "litert".
            verbose: let Keras print what it writes.

        Returns:
            The path written.

        Example:

        ```python
        agent.export_policy("policy.onnx", format="onnx")
        session = onnxruntime.InferenceSession("policy.onnx")
        actions = session.run(None, {"observation": observations})[0]
        ```
        """
        from kerasrl import export

        return export.export_policy(self, path, format=format, verbose=verbose)

    def export(self, filepath: str, format: str = "tf_saved_model", verbose: bool | None = None,
               input_signature: Any = None, **kwargs: Any) -> str:
        """Keras' export: the deterministic policy, as `export_policy` writes it."""
        if input_signature is not None or kwargs:
            raise ValueError(f"{type(self).__name__}.export writes the policy with its own input signature; "
                             "use export_policy(path, format=...).")
        return self.export_policy(filepath, format=format, verbose=bool(verbose))

    # ---------------------------------------------------------------- learning
    def update(self, batch: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def target_pairs(self) -> list[tuple[keras.Model, keras.Model]]:
        return []

    def optimizer_roles(self) -> dict[str, list]:
        raise NotImplementedError

    def apply_gradients(self, role: str, loss_tape: tf.GradientTape, loss: Any, variables: list) -> None:
        """Gradient step of one network's optimizer (with optional norm clipping)."""
        grads = loss_tape.gradient(loss, variables)
        max_norm = getattr(self, "max_grad_norm", None)
        if max_norm:
            grads, _ = tf.clip_by_global_norm(grads, max_norm)
        getattr(self, f"{role}_optimizer").apply_gradients(zip(grads, variables))

    def update_targets(self, tau: Any) -> None:
        for online, target in self.target_pairs():
            for w, tw in zip(online.weights, target.weights):
                tw.assign(tau * w + (1.0 - tau) * tw)

    def noise_seed(self, salt: int) -> Any:
        """A stateless-RNG seed for the current gradient step.

        Derived from `seed` and the saved `num_gradient_steps` counter, so a
        loaded or resumed agent continues the same noise sequence.
        """
        step = ops.cast(self.num_gradient_steps, "int64")
        return ops.stack([ops.convert_to_tensor(self.seed or 0, "int64"), step * 16 + salt])

    def target_update_due(self) -> Any:
        return ops.equal(self.num_gradient_steps % self.target_every, 0)

    def set_target_update(self, tau: float, every: int = 1) -> None:
        """Targets blend with `tau` every `every` gradient steps (1.0 = hard copy)."""
        if not 0.0 < tau <= 1.0 or int(every) < 1:
            raise ValueError(f"Target update needs 0 < tau <= 1 and every >= 1, got tau={tau}, every={every}.")
        self.target_tau.assign(float(tau))
        self.target_every.assign(int(every))

    def default_target_update(self) -> keras.callbacks.Callback:
        from kerasrl.callbacks import SoftTargetUpdate

        return SoftTargetUpdate(tau=self.tau, every=self.target_update_interval)

    def train_step(self, data: dict[str, Any]) -> dict[str, Any]:
        if isinstance(data, tuple):  # train_on_batch(batch) packs (x, y, sample_weight)
            data = keras.utils.unpack_x_y_sample_weight(data)[0]
        metrics = dict(self.update(data))
        td_errors = metrics.pop(TD_ERRORS_KEY, None)
        if td_errors is not None and "indices" in data and self._td_log is not None:
            # For the buffer's priorities: the collector applies them before it samples.
            self._td_log.record(self.num_gradient_steps, data["indices"], td_errors)
        self.num_gradient_steps.assign_add(1)
        tau = ops.where(self.target_update_due(), self.target_tau, 0.0)
        self.update_targets(tau)
        if "env_steps" in data:
            self.num_env_steps.assign(ops.cast(data["env_steps"], "int64"))
        logs = {}
        for name, value in metrics.items():
            self.trackers[name].update_state(value)
            logs[name] = self.trackers[name].result()
        for key in ENV_LOG_KEYS:
            if key in data:
                logs[key] = ops.cast(data[key], "float32")
        return logs

    @property
    def metrics(self) -> list:
        return list(self.trackers.values())

    # ----------------------------------------------------------------- compile
    def compile(
        self,
        optimizer: keras.optimizers.Optimizer | str | None = None,
        *,
        steps_per_execution: int = DEFAULT_STEPS_PER_EXECUTION,
        jit_compile: bool | str = "auto",
        **role_optimizers: keras.optimizers.Optimizer | str | None,
    ) -> None:
        """Builds one optimizer per network and compiles the train step.

        Args:
            optimizer: the optimizer every network gets a copy of (by
                default `default_optimizer()`: Adam(3e-4), or the agent's own).
            steps_per_execution: updates per compiled call (Keras' option,
                whose own default is 1); target updates, epochs and
                `steps_per_epoch` stay exact at any value. 50 by default, the
                fastest setting the benchmarks found: Keras' fit loop costs
                ~2.5 ms per call, as much as a small update. Callbacks'
                `on_train_batch_end` runs once per call, so a `Checkpoint`
                looks at the step count every 50 updates.
            jit_compile: XLA-compile the update. Keras' "auto" (the default)
                turns it off on CPU-only machines; on this project's 2-core CPU
                XLA was not faster for SAC (ceiling 146-235 updates/s with XLA,
                176-256 without, in alternating runs) and compiles slower.
            **role_optimizers: per-network optimizers overriding the copy, e.g.
                `actor_optimizer=`, `critic_optimizer=`, `alpha_optimizer=`.
        """
        roles = self.optimizer_roles()
        unknown = [k for k in role_optimizers if not k.endswith("_optimizer") or k[: -len("_optimizer")] not in roles]
        if unknown:
            raise ValueError(f"Unknown optimizer arguments {unknown}; {type(self).__name__} takes "
                             f"{[r + '_optimizer' for r in roles]}.")
        base = keras.optimizers.get(optimizer) if optimizer is not None else self.default_optimizer()
        for role, variables in roles.items():
            given = role_optimizers.get(f"{role}_optimizer")
            opt = keras.optimizers.get(given) if given is not None else type(base).from_config(base.get_config())
            opt.build(variables)  # built now, so its state saves and loads
            setattr(self, f"{role}_optimizer", opt)
        first_role = next(iter(roles))
        # Keras' own hooks (TensorBoard, BackupAndRestore) read `model.optimizer`.
        super().compile(
            optimizer=getattr(self, f"{first_role}_optimizer"),
            steps_per_execution=steps_per_execution,
            jit_compile=jit_compile,
        )

    def default_optimizer(self) -> keras.optimizers.Optimizer:
        """What `compile()` gives every network when no optimizer is named."""
        return keras.optimizers.Adam(3e-4)

    def get_compile_config(self) -> dict:
        if not self.compiled:
            return {}
        config = {
            f"{role}_optimizer": keras.saving.serialize_keras_object(getattr(self, f"{role}_optimizer"))
            for role in self.optimizer_roles()
        }
        config.update(steps_per_execution=self.steps_per_execution, jit_compile=bool(self.jit_compile))
        return config

    def compile_from_config(self, config: dict) -> None:
        config = dict(config)
        for key in list(config):
            if key.endswith("_optimizer"):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        self.compile(**config)

    # --------------------------------------------------------------------- fit
    def fit(self, x: Any = None, y: Any = None, *, steps_per_epoch: int | None = None,
            callbacks: Iterable[keras.callbacks.Callback] | None = None, **kwargs: Any):
        """Keras fit over an `EnvDataset`, a `RolloutDataset` (on-policy agents) or an environment.

        An environment is wrapped in the agent's `default_dataset`. With an
        `EnvDataset`: `steps_per_epoch` (gradient steps, exact for any
        `steps_per_execution`) defaults to 1000; with a `RolloutDataset`, an
        epoch is one rollout unless `steps_per_epoch` is given. Agents with target
        networks get the default target-update callback when none is given; kerasrl callbacks
        that write logs (EvalCallback) run before Keras' own, so History,
        CSVLogger and EarlyStopping see what they write; a NaN `episode_return`
        (no episode ended yet) is never EarlyStopping's or ModelCheckpoint's
        best; with a prioritized buffer, `PriorityRefresh` is added when missing.
        """
        from kerasrl.callbacks import PriorityRefresh, TargetUpdate
        from kerasrl.callbacks.evaluation import NaNIsNoBest
        from kerasrl.data import EnvDataset
        from kerasrl.rollout import RolloutDataset

        if not self.compiled:
            raise RuntimeError(f"Call {type(self).__name__}.compile() before fit().")
        dataset = None
        if isinstance(x, (gym.Env, gym.vector.VectorEnv, str)):
            x = self.default_dataset(x)
        if isinstance(x, (EnvDataset, RolloutDataset)):
            dataset = x
            if dataset.agent is not self:
                raise ValueError(f"This {type(dataset).__name__} was built for a different agent.")
            # A finite dataset per epoch: Keras ends the last execution of an
            # epoch at the end of the data, so an epoch runs exactly
            # steps_per_epoch updates whatever steps_per_execution is.
            # A RolloutDataset without steps_per_epoch gives one rollout per epoch.
            on_policy = isinstance(dataset, RolloutDataset)
            x = dataset.as_dataset(take=steps_per_epoch if on_policy else steps_per_epoch or 1000)
            steps_per_epoch = None
            callbacks = list(callbacks or [])
            if self.target_pairs() and not any(isinstance(cb, TargetUpdate) for cb in callbacks):
                callbacks.append(self.default_target_update())
            prioritized = not on_policy and dataset.buffer.prioritized
            if prioritized and not any(isinstance(cb, PriorityRefresh) for cb in callbacks):
                callbacks.append(PriorityRefresh())
            callbacks.sort(key=lambda cb: not getattr(cb, "writes_logs", False))
            callbacks.append(NaNIsNoBest(callbacks))
        self._forget_policy()
        self.env_dataset = dataset
        try:
            if dataset is not None:
                kwargs.setdefault("shuffle", False)
            return super().fit(x, y, steps_per_epoch=steps_per_epoch, callbacks=callbacks, **kwargs)
        except (tf.errors.OpError, StopIteration) as error:
            if dataset is not None and dataset.error is not None:
                raise dataset.error from None
            raise error
        finally:
            if dataset is not None:
                dataset.close()
            self.env_dataset = None
            self._forget_policy()

    def default_dataset(self, env: Any) -> Any:
        """The dataset `fit` wraps an environment (or id) in: an EnvDataset with its defaults."""
        from kerasrl.data import EnvDataset

        return EnvDataset(env, self)

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict:
        return {
            "observation_space": spaces.space_to_config(self.observation_space),
            "action_space": spaces.space_to_config(self.action_space),
            "gamma": self.gamma,
            "tau": self.tau,
            "target_update_interval": self.target_update_interval,
            "seed": self.seed,
            "name": self.name,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config: dict) -> "Agent":
        config = dict(config)
        config["observation_space"] = spaces.space_from_config(config["observation_space"])
        config["action_space"] = spaces.space_from_config(config["action_space"])
        return cls(**config)

    def build(self, input_shape: Any = None) -> None:  # networks are built in __init__
        self.built = True


def copy_weights(source: keras.Model, target: keras.Model) -> None:
    for w, tw in zip(source.weights, target.weights):
        tw.assign(w)


def gaussian_log_prob_tanh(u: Any, mean: Any, log_std: Any) -> Any:
    """log pi(a|s) of a = tanh(u), u ~ N(mean, exp(log_std)), summed over action dims."""
    log_normal = -0.5 * ops.square((u - mean) / ops.exp(log_std)) - log_std - 0.5 * math.log(2 * math.pi)
    # log(1 - tanh(u)^2), written stably as 2 * (log 2 - u - softplus(-2u)).
    log_det = 2.0 * (math.log(2.0) - u - ops.softplus(-2.0 * u))
    return ops.sum(log_normal - log_det, axis=-1)
