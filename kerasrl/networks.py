"""Multilayer perceptrons and Q-heads for agents, and a numpy forward pass for cheap acting."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras
import numba
import numpy as np
import tensorflow as tf
from keras import ops

_NUMPY_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
}


@keras.saving.register_keras_serializable(package="kerasrl")
class DuelingHead(keras.layers.Layer):
    """Dueling Q-values (Wang et al. 2016): `Q(s, a) = V(s) + A(s, a) - mean_a A(s, a)`.

    One Dense projection gives V and the advantages together.

    Args:
        units: the number of actions.
        kernel_initializer: initialiser of the projection.
    """

    def __init__(self, units: int, kernel_initializer: Any = "glorot_uniform", **kwargs: Any):
        super().__init__(**kwargs)
        self.units = int(units)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape: tuple) -> None:
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units + 1), initializer=self.kernel_initializer,
                                      name="kernel")
        self.bias = self.add_weight(shape=(self.units + 1,), initializer="zeros", name="bias")

    def call(self, x: Any) -> Any:
        z = ops.matmul(x, self.kernel) + self.bias
        value, advantage = z[:, :1], z[:, 1:]
        return value + advantage - ops.mean(advantage, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(units=self.units, kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config


def mlp(
    input_dim: int,
    hidden: Sequence[int],
    output_dim: int,
    activation: str = "relu",
    name: str = "mlp",
    output_activation: str | None = None,
    seed: int | None = None,
    dueling: bool = False,
    dtype: Any = None,
) -> keras.Sequential:
    """A built `keras.Sequential` of Dense layers: `input_dim -> hidden -> output_dim`.

    With `dueling=True` the output layer is a `DuelingHead` of `output_dim` actions.
    `dtype` is the hidden layers' dtype policy (Keras' global one if None); the
    output layer always computes in float32, so losses and targets stay float32
    under a mixed policy such as "mixed_bfloat16".
    """
    init = lambda i: keras.initializers.GlorotUniform(seed=None if seed is None else seed + i)
    layers = [keras.Input(shape=(input_dim,))]
    layers += [keras.layers.Dense(u, activation=activation, kernel_initializer=init(i), dtype=dtype)
               for i, u in enumerate(hidden)]
    if dueling:
        layers.append(DuelingHead(output_dim, kernel_initializer=init(len(hidden)), dtype="float32"))
    else:
        layers.append(keras.layers.Dense(output_dim, activation=output_activation, kernel_initializer=init(len(hidden)),
                                         dtype="float32"))
    return keras.Sequential(layers, name=name)


def nature_cnn(
    input_shape: tuple[int, int, int],
    output_dim: int,
    name: str = "nature_cnn",
    seed: int | None = None,
    dueling: bool = False,
    dtype: Any = None,
) -> keras.Sequential:
    """The Nature DQN network (Mnih et al. 2015) over channels-first frame stacks.

    Input `(k, H, W)` frames with values 0-255 (uint8 in the buffer); they are
    scaled to [0, 1] inside the model. Three convolutions (32x8x8/4, 64x4x4/2,
    64x3x3/1), a 512-unit dense layer and the Q head, all with orthogonal
    initialisation (gain sqrt(2) before ReLUs, 1 for the head). `dtype` as in
    `mlp`: the torso's policy; the head computes in float32.
    """
    init = lambda i, gain=2 ** 0.5: keras.initializers.Orthogonal(gain=gain, seed=None if seed is None else seed + i)
    head = (DuelingHead(output_dim, kernel_initializer=init(5, 1.0), dtype="float32") if dueling
            else keras.layers.Dense(output_dim, kernel_initializer=init(5, 1.0), dtype="float32"))
    return keras.Sequential([
        keras.Input(shape=tuple(input_shape)),
        keras.layers.Permute((2, 3, 1), dtype=dtype),  # (k, H, W) -> (H, W, k): Keras convolutions are channels-last
        keras.layers.Rescaling(1.0 / 255.0, dtype=dtype),
        keras.layers.Conv2D(32, 8, strides=4, activation="relu", kernel_initializer=init(1), dtype=dtype),
        keras.layers.Conv2D(64, 4, strides=2, activation="relu", kernel_initializer=init(2), dtype=dtype),
        keras.layers.Conv2D(64, 3, strides=1, activation="relu", kernel_initializer=init(3), dtype=dtype),
        keras.layers.Flatten(dtype=dtype),
        keras.layers.Dense(512, activation="relu", kernel_initializer=init(4), dtype=dtype),
        head,
    ], name=name)


class NumpyMLP:
    """A frozen numpy copy of a Sequential of Dense layers (and a final
    DuelingHead), for acting without TensorFlow.

    One observation through a 256x256 MLP takes ~15 µs this way against ~0.5 ms
    for a tf.function call, which is what makes per-step acting cheap.
    """

    def __init__(self, model: keras.Model):
        self.model = model
        self.activations = [
            _dueling if isinstance(layer, DuelingHead) else _NUMPY_ACTIVATIONS[_activation_name(layer)]
            for layer in model.layers
        ]
        self.refresh()

    def refresh(self) -> None:
        """Reads the current weights (~60 µs for a 256x256 MLP, see `read_numpy`)."""
        weights = [read_numpy(w) for w in self.model.weights]
        self.params = list(zip(weights[0::2], weights[1::2], self.activations))

    @staticmethod
    def supports(model: keras.Model) -> bool:
        if not isinstance(model, keras.Sequential) or not model.layers:
            return False
        *body, last = model.layers
        dense = lambda layer: (type(layer) is keras.layers.Dense and layer.use_bias
                               and _activation_name(layer) in _NUMPY_ACTIVATIONS)
        return all(dense(layer) for layer in body) and (dense(last) or type(last) is DuelingHead)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for kernel, bias, activation in self.params:
            x = activation(x @ kernel + bias)
        return x


def read_numpy(variable: keras.Variable | tf.Variable) -> np.ndarray:
    """A variable's current value as a numpy array, by one bare ReadVariableOp.

    `Variable.numpy()` costs ~40-70 µs more in Keras' and TensorFlow's
    wrappers; the collector pays this on every policy sync and priority flush
    while an update competes for the cores. The array is a snapshot:
    TensorFlow copies a variable's buffer before updating it while a read of
    it is alive.
    """
    # The backing tf.Variable (`.value` would be a cast copy inside an autocast scope).
    tf_variable = variable._value if isinstance(variable, keras.Variable) else variable
    return tf.raw_ops.ReadVariableOp(resource=tf_variable.handle, dtype=tf_variable.dtype).numpy()


def _dueling(z: np.ndarray) -> np.ndarray:
    advantage = z[:, 1:]
    return z[:, :1] + advantage - advantage.mean(axis=-1, keepdims=True)


def _activation_name(layer: keras.layers.Layer) -> str:
    activation = keras.activations.serialize(layer.activation)
    return activation if isinstance(activation, str) else activation.get("config", {}).get("name", "")


def memory_network(
    obs_dim: int,
    act_dim: int,
    history_length: int,
    output_dim: int,
    *,
    with_action: bool,
    memory_hidden: Sequence[int] = (128,),
    lstm_units: int = 128,
    memory_after: Sequence[int] = (),
    feature_hidden: Sequence[int] = (128, 128),
    combination_hidden: Sequence[int] = (128,),
    use_past_actions: bool = True,
    activation: str = "relu",
    output_activation: str | None = None,
    name: str = "memory_network",
    seed: int | None = None,
    dtype: Any = None,
) -> keras.Model:
    """LSTM-TD3's network (Meng et al. 2021): a memory branch over the past and a current-feature branch.

    Inputs (a dict): `observation` (obs_dim,), `action` (act_dim,) when
    `with_action` (critics), and with `history_length > 0`:
    `history_observation` (L, obs_dim), `history_action` (L, act_dim) (when
    `use_past_actions`) and `history_mask` (L,) bool.

    * memory: Dense `memory_hidden` over each past [observation, action] ->
      LSTM(`lstm_units`), which skips masked steps (an empty history gives
      the zero state) -> Dense `memory_after`;
    * current features: Dense `feature_hidden` over [observation(, action)];
    * combination: Dense `combination_hidden` over both -> the output layer.

    Layers are named (`memory_dense_i`, `memory_lstm`, `memory_after_i`,
    `feature_i`, `combination_i`, `output`) so `NumpyMemoryNet` can mirror them.
    """
    init = lambda i: keras.initializers.GlorotUniform(seed=None if seed is None else seed + i)
    dense = lambda units, layer_name, i, act=activation, layer_dtype=dtype: keras.layers.Dense(
        units, activation=act, kernel_initializer=init(i), name=layer_name, dtype=layer_dtype)
    inputs = {"observation": keras.Input(shape=(obs_dim,), name="observation")}
    current = inputs["observation"]
    if with_action:
        inputs["action"] = keras.Input(shape=(act_dim,), name="action")
        current = keras.layers.Concatenate(name="current", dtype=dtype)([current, inputs["action"]])
    for i, units in enumerate(feature_hidden):
        current = dense(units, f"feature_{i}", 10 + i)(current)
    branches = [current]
    if history_length:
        inputs["history_observation"] = keras.Input(shape=(history_length, obs_dim), name="history_observation")
        inputs["history_mask"] = keras.Input(shape=(history_length,), dtype="bool", name="history_mask")
        past = inputs["history_observation"]
        if use_past_actions:
            inputs["history_action"] = keras.Input(shape=(history_length, act_dim), name="history_action")
            past = keras.layers.Concatenate(name="past", dtype=dtype)([past, inputs["history_action"]])
        for i, units in enumerate(memory_hidden):
            past = dense(units, f"memory_dense_{i}", i)(past)
        # seed=0: the LSTM's dropout generator (unused, no dropout) then has a fixed state that loads back equal.
        # unroll: a short window runs faster as unrolled steps than as a graph loop (and traces faster).
        memory = keras.layers.LSTM(lstm_units, name="memory_lstm", dtype=dtype, seed=0, unroll=history_length <= 16,
                                   kernel_initializer=init(5), recurrent_initializer=keras.initializers.Orthogonal(
                                       seed=None if seed is None else seed + 6))(past, mask=inputs["history_mask"])
        for i, units in enumerate(memory_after):
            memory = dense(units, f"memory_after_{i}", 20 + i)(memory)
        branches.insert(0, memory)
    x = branches[0] if len(branches) == 1 else keras.layers.Concatenate(name="combined", dtype=dtype)(branches)
    for i, units in enumerate(combination_hidden):
        x = dense(units, f"combination_{i}", 30 + i)(x)
    output = dense(output_dim, "output", 40, act=output_activation, layer_dtype="float32")(x)
    return keras.Model(inputs, output, name=name)


class NumpyMemoryNet:
    """A frozen numpy copy of a `memory_network`, for acting without TensorFlow.

    Called with the current observations (B, obs_dim) and the history arrays
    (B, L, ...) and mask (B, L); the LSTM steps only where the mask is set,
    as Keras' masked LSTM does.
    """

    def __init__(self, model: keras.Model):
        self.model = model
        self.refresh()

    def refresh(self) -> None:
        """Reads the current weights."""
        layers = {layer.name: layer for layer in self.model.layers}

        def stack(prefix: str) -> list[tuple[np.ndarray, np.ndarray, Callable]]:
            found, i = [], 0
            while f"{prefix}_{i}" in layers:
                layer = layers[f"{prefix}_{i}"]
                found.append((read_numpy(layer.kernel), read_numpy(layer.bias),
                              _NUMPY_ACTIVATIONS[_activation_name(layer)]))
                i += 1
            return found

        self.memory_dense, self.memory_after = stack("memory_dense"), stack("memory_after")
        self.features, self.combination = stack("feature"), stack("combination")
        output = layers["output"]
        self.output = (read_numpy(output.kernel), read_numpy(output.bias), _NUMPY_ACTIVATIONS[_activation_name(output)])
        lstm = layers.get("memory_lstm")
        self.lstm = None if lstm is None else tuple(read_numpy(w) for w in lstm.cell.weights)  # kernel, recurrent, bias
        self.past_actions = "history_action" in self.model.input

    def __call__(self, observation: np.ndarray, history_observation: np.ndarray | None = None,
                 history_action: np.ndarray | None = None, history_mask: np.ndarray | None = None,
                 action: np.ndarray | None = None) -> np.ndarray:
        x = observation if action is None else np.concatenate([observation, action], axis=-1)
        for kernel, bias, activation in self.features:
            x = activation(x @ kernel + bias)
        if self.lstm is not None:
            past = history_observation
            if self.past_actions:
                past = np.concatenate([past, history_action], axis=-1)
            batch, length = past.shape[:2]
            past = past.reshape(batch * length, -1)  # 2-D matmuls: numpy's stacked 3-D ones are slower
            for kernel, bias, activation in self.memory_dense:
                past = activation(past @ kernel + bias)
            kernel, recurrent, bias = self.lstm
            units = recurrent.shape[0]
            projected = (past @ kernel + bias).reshape(batch, length, -1)  # the input part of every gate, at once
            h = _lstm_window(projected, recurrent, np.ascontiguousarray(history_mask))
            for kernel, bias, activation in self.memory_after:
                h = activation(h @ kernel + bias)
            x = np.concatenate([h, x], axis=-1)
        for kernel, bias, activation in self.combination:
            x = activation(x @ kernel + bias)
        kernel, bias, activation = self.output
        return activation(x @ kernel + bias)


@numba.njit(cache=True, nogil=True)
def _lstm_window(projected: np.ndarray, recurrent: np.ndarray, mask: np.ndarray) -> np.ndarray:  # pragma: no cover
    """The LSTM over a window, from zero state: the last h of each row (B, units).

    `projected` (B, L, 4 units) holds each step's input part of the gates,
    Keras' order (input, forget, cell, output); a row steps only where `mask`
    (B, L) is set, as Keras' masked LSTM does. One compiled loop: the recurrent
    products of a few rows are cheaper here than through BLAS calls (and its
    threads), and the gate arithmetic costs no numpy calls. The gates are
    float32, as Keras computes them, one activation per loop (half the time of
    float64 arithmetic mixed into one loop), and a row's first step skips the
    recurrent product (h is still zero).
    """
    batch, length, four_units = projected.shape
    units = four_units // 4
    one = np.float32(1.0)
    h = np.zeros((batch, units), np.float32)
    c = np.zeros((batch, units), np.float32)
    z = np.empty(four_units, np.float32)
    for b in range(batch):
        started = False
        for t in range(length):
            if not mask[b, t]:
                continue
            z[:] = projected[b, t]
            if started:
                for k in range(units):  # z += h[b] @ recurrent, row by row of the recurrent kernel (contiguous)
                    hk = h[b, k]
                    for j in range(four_units):
                        z[j] += hk * recurrent[k, j]
            started = True
            for j in range(2 * units):  # input and forget gates
                z[j] = one / (one + np.exp(-z[j]))
            for j in range(3 * units, four_units):  # output gate
                z[j] = one / (one + np.exp(-z[j]))
            for j in range(2 * units, 3 * units):  # cell candidate
                z[j] = np.tanh(z[j])
            for j in range(units):
                c[b, j] = z[units + j] * c[b, j] + z[j] * z[2 * units + j]
            for j in range(units):
                h[b, j] = z[3 * units + j] * np.tanh(c[b, j])
    return h
