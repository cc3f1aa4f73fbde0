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

    def refresh(self, weights: list[np.ndarray] | None = None) -> None:
        """Reads the current weights (~60 µs for a 256x256 MLP, see `read_numpy`), or takes them as given."""
        weights = [read_numpy(w) for w in self.model.weights] if weights is None else weights
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


def backing_variable(variable: keras.Variable | tf.Variable) -> tf.Variable:
    """The tf.Variable behind a Keras variable (`.value` would be a cast copy inside an autocast scope)."""
    return variable._value if isinstance(variable, keras.Variable) else variable


def read_numpy(variable: keras.Variable | tf.Variable) -> np.ndarray:
    """A variable's current value as a numpy array, by one bare ReadVariableOp.

    `Variable.numpy()` costs ~40-70 µs more in Keras' and TensorFlow's
    wrappers; the collector pays this on every policy sync and priority flush
    while an update competes for the cores. The array is a snapshot:
    TensorFlow copies a variable's buffer before updating it while a read of
    it is alive.
    """
    tf_variable = backing_variable(variable)
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


_ACTIVATION_CODES = {"linear": 0, "relu": 1, "tanh": 2, "elu": 3, "sigmoid": 4}  # as `_activate` reads them


class NumpyMemoryNet:
    """A frozen copy of a `memory_network`, for acting without TensorFlow.

    Called with the current observations (B, obs_dim) and the history arrays
    (B, L, ...) and mask (B, L); the LSTM steps only where the mask is set,
    as Keras' masked LSTM does. The whole forward pass is one compiled call
    (`_memory_forward`) over the weights packed into one array: a numpy call
    per layer costs more than the layer itself at one observation.
    """

    def __init__(self, model: keras.Model):
        self.model = model
        self.version = -1
        self.refresh()

    def refresh(self) -> None:
        """Reads the current weights (and counts a new `version`: runs made before it are stale)."""
        self.version += 1
        layers = {layer.name: layer for layer in self.model.layers}
        parts: list[np.ndarray] = []
        layout: list[int] = []  # read in this order by `_memory_forward`, see `_dense_stack`

        def add(array: np.ndarray) -> int:
            offset = sum(part.size for part in parts)
            parts.append(np.asarray(array, np.float32).ravel())
            return offset

        def stack(names: list[str]) -> None:
            layout.append(len(names))
            for name in names:
                kernel = read_numpy(layers[name].kernel)
                layout.extend([add(kernel), *kernel.shape, add(read_numpy(layers[name].bias)),
                               _ACTIVATION_CODES[_activation_name(layers[name])]])

        numbered = lambda prefix: [f"{prefix}_{i}" for i in range(len(layers)) if f"{prefix}_{i}" in layers]
        lstm = layers.get("memory_lstm")
        self.past_actions = "history_action" in self.model.input
        stack(numbered("feature"))
        layout.append(int(self.past_actions))
        stack(numbered("memory_dense"))
        if lstm is None:
            layout.extend([0] * 6)
        else:
            kernel, recurrent, bias = (read_numpy(w) for w in lstm.cell.weights)
            layout.extend([1, add(kernel), kernel.shape[0], add(recurrent), recurrent.shape[0], add(bias)])
        stack(numbered("memory_after"))
        stack(numbered("combination"))
        stack(["output"])
        self.weights, self.layout = np.concatenate(parts), np.asarray(layout, np.int64)
        self.memory = lstm is not None

    def __call__(self, observation: np.ndarray, history_observation: np.ndarray | None = None,
                 history_action: np.ndarray | None = None, history_mask: np.ndarray | None = None,
                 action: np.ndarray | None = None) -> np.ndarray:
        current = observation if action is None else np.concatenate([observation, action], axis=-1)
        if not self.memory:
            history_observation = history_action = _NO_HISTORY
            history_mask = _NO_MASK
        elif not self.past_actions:
            history_action = _NO_HISTORY
        return _memory_forward(_contiguous(current), _contiguous(history_observation), _contiguous(history_action),
                               _contiguous(history_mask, bool), self.weights, self.layout)

    # Incremental acting. The window's LSTM starts from zero at its oldest step, so the next
    # window's cannot go on from it; but each window is a suffix of the ones before it. The
    # runs of a window are the LSTM's state (h, c) after it from each of its L start steps, oldest
    # first (B, L, units): run 0 is the window's own, and one step on, runs 1..L-1 are runs
    # 0..L-2 of the next window. Advancing all of them by a step reads the recurrent kernel
    # once, where the window pass reads it once per step.

    def runs(self, history_observation: np.ndarray, history_action: np.ndarray | None,
             history_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The runs `(h, c)` of windows (B, L, ...), each (B, L, units)."""
        history_action = history_action if self.past_actions else _NO_HISTORY
        return _window_runs(_contiguous(history_observation), _contiguous(history_action),
                            _contiguous(history_mask, bool), self.weights, self.layout)

    def advance_runs(self, h: np.ndarray, c: np.ndarray, observation: np.ndarray,
                     action: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The runs after the window moves on by the past step (observation (B, obs_dim), action (B, act_dim))."""
        action = action if self.past_actions else _NO_HISTORY[0]
        return _advanced_runs(h, c, _contiguous(observation), _contiguous(action), self.weights, self.layout)

    def from_runs(self, observation: np.ndarray, h: np.ndarray) -> np.ndarray:
        """The output for the current observations given run 0's `h` (B, units): as `__call__` on the window."""
        return _runs_output(_contiguous(observation), _contiguous(h), self.weights, self.layout)


def _contiguous(x: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
    return np.ascontiguousarray(x, dtype)


_NO_HISTORY, _NO_MASK = np.zeros((1, 1, 1), np.float32), np.zeros((1, 1), bool)


# Float flags that let LLVM vectorise the kernels below (reassociated sums, reciprocals)
# while keeping NaN and infinity semantics; "numpy" errors drop the zero-division check
# that would keep a division loop scalar.
_FAST = {"nsz", "arcp", "contract", "reassoc"}


@numba.njit(cache=True, inline="always", fastmath=_FAST, error_model="numpy")
def _tanh32(x: np.float32) -> np.float32:  # pragma: no cover
    """tanh in float32 by the rational approximation TensorFlow's CPU kernels use (Eigen's
    `generic_fast_tanh_float`, within ~3e-7 of the exact value): plain arithmetic, so a
    loop of it vectorises, where numba calls libm's tanhf and expf once per element."""
    limit = np.float32(7.90531110763549805)  # tanh rounds to +-1 beyond it
    x = min(max(x, -limit), limit)
    x2 = x * x
    p = np.float32(-2.76076847742355e-16)
    p = p * x2 + np.float32(2.00018790482477e-13)
    p = p * x2 + np.float32(-8.60467152213735e-11)
    p = p * x2 + np.float32(5.12229709037114e-08)
    p = p * x2 + np.float32(1.48572235717979e-05)
    p = p * x2 + np.float32(6.37261928875436e-04)
    p = p * x2 + np.float32(4.89352455891786e-03)
    q = np.float32(1.19825839466702e-06)
    q = q * x2 + np.float32(1.18534705686654e-04)
    q = q * x2 + np.float32(2.26843463243900e-03)
    q = q * x2 + np.float32(4.89352518554385e-03)
    return x * p / q


@numba.njit(cache=True, inline="always", fastmath=_FAST, error_model="numpy")
def _add_product(z: np.ndarray, x: np.ndarray, matrix: np.ndarray) -> None:  # pragma: no cover
    """z += x @ matrix for rows z (R, n) and x (R, k): four matrix rows at a time, each group
    read once for all R rows while it is in the L1 cache, and a quarter of the loads and
    stores of z; rows of z four at a time, so each load of the matrix serves sixteen products
    (a 128x512 kernel: 4 rows 10.6 -> 7.6 us). The matrices (256 KB for an LSTM of 128)
    stream from L2 once per call. Each row's sums are in the same order however many rows."""
    rows = x.shape[0]
    depth, columns = matrix.shape
    k = 0
    while k + 4 <= depth:
        m0, m1, m2, m3 = matrix[k], matrix[k + 1], matrix[k + 2], matrix[k + 3]
        r = 0
        while r + 4 <= rows:
            a0, a1, a2, a3 = x[r, k], x[r, k + 1], x[r, k + 2], x[r, k + 3]
            b0, b1, b2, b3 = x[r + 1, k], x[r + 1, k + 1], x[r + 1, k + 2], x[r + 1, k + 3]
            c0, c1, c2, c3 = x[r + 2, k], x[r + 2, k + 1], x[r + 2, k + 2], x[r + 2, k + 3]
            d0, d1, d2, d3 = x[r + 3, k], x[r + 3, k + 1], x[r + 3, k + 2], x[r + 3, k + 3]
            za, zb, zc, zd = z[r], z[r + 1], z[r + 2], z[r + 3]
            for j in range(columns):
                v0, v1, v2, v3 = m0[j], m1[j], m2[j], m3[j]
                za[j] += (a0 * v0 + a1 * v1) + (a2 * v2 + a3 * v3)
                zb[j] += (b0 * v0 + b1 * v1) + (b2 * v2 + b3 * v3)
                zc[j] += (c0 * v0 + c1 * v1) + (c2 * v2 + c3 * v3)
                zd[j] += (d0 * v0 + d1 * v1) + (d2 * v2 + d3 * v3)
            r += 4
        for r in range(r, rows):
            x0, x1, x2, x3 = x[r, k], x[r, k + 1], x[r, k + 2], x[r, k + 3]
            zr = z[r]
            for j in range(columns):
                zr[j] += (x0 * m0[j] + x1 * m1[j]) + (x2 * m2[j] + x3 * m3[j])
        k += 4
    for k in range(k, depth):
        m = matrix[k]
        for r in range(rows):
            xk, zr = x[r, k], z[r]
            for j in range(columns):
                zr[j] += xk * m[j]


@numba.njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def _lstm_window(inputs: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray,
                 mask: np.ndarray) -> np.ndarray:  # pragma: no cover
    """The LSTM over a window, from zero state: the last h of each row (B, units).

    `inputs` (B, L, d) are the steps; a row steps only where `mask` (B, L) is
    set, as Keras' masked LSTM does. One compiled loop, in float32 as Keras
    computes it, gates in Keras' order (input, forget, cell, output): the
    products of a few rows are cheaper here than through BLAS calls (and its
    threads, which compete with a running update); the input part of every
    step's gates comes first, in one pass over the kernel; a row's first step
    skips the recurrent product (h is still zero); the gates are vectorised
    arithmetic (`_tanh32`, and sigmoid(x) = (1 + tanh(x / 2)) / 2).
    """
    batch, length, depth = inputs.shape
    units = recurrent.shape[0]
    four_units = 4 * units
    projected = np.empty((batch * length, four_units), np.float32)
    projected[:] = bias
    _add_product(projected, inputs.reshape(batch * length, depth), kernel)
    h = np.zeros((batch, units), np.float32)
    c = np.zeros((batch, units), np.float32)
    for b in range(batch):
        started = False
        for t in range(length):
            if not mask[b, t]:
                continue
            z = projected[b * length + t: b * length + t + 1]
            if started:
                _add_product(z, h[b: b + 1], recurrent)
            started = True
            _lstm_cell(z[0], c[b], c[b], h[b])
    return h


@numba.njit(cache=True, inline="always", fastmath=_FAST, error_model="numpy")
def _lstm_cell(z: np.ndarray, c_before: np.ndarray, c: np.ndarray, h: np.ndarray) -> None:  # pragma: no cover
    """One LSTM step from its pre-activations `z` (4 units, overwritten) in Keras' gate order (input,
    forget, cell, output): `c` and `h` after it (`c` may be `c_before`). The gates are vectorised
    arithmetic: `_tanh32`, and sigmoid(x) = (1 + tanh(x / 2)) / 2."""
    units = h.shape[0]
    half = np.float32(0.5)
    for j in range(2 * units):  # input and forget gates
        z[j] = half * _tanh32(half * z[j]) + half
    for j in range(3 * units, 4 * units):  # output gate
        z[j] = half * _tanh32(half * z[j]) + half
    for j in range(2 * units, 3 * units):  # cell candidate
        z[j] = _tanh32(z[j])
    for j in range(units):
        c[j] = z[units + j] * c_before[j] + z[j] * z[2 * units + j]
    for j in range(units):
        h[j] = z[3 * units + j] * _tanh32(c[j])


@numba.njit(cache=True, inline="always", fastmath=_FAST, error_model="numpy")
def _activate(x: np.ndarray, code: int) -> None:  # pragma: no cover
    """An activation in place, by its `_ACTIVATION_CODES` code (one loop per kind, so each vectorises)."""
    flat = x.reshape(-1)
    if code == 1:
        for i in range(flat.size):
            flat[i] = max(flat[i], np.float32(0.0))
    elif code == 2:
        for i in range(flat.size):
            flat[i] = _tanh32(flat[i])
    elif code == 3:
        for i in range(flat.size):
            flat[i] = flat[i] if flat[i] > 0 else np.expm1(flat[i])
    elif code == 4:
        for i in range(flat.size):
            flat[i] = np.float32(0.5) * _tanh32(np.float32(0.5) * flat[i]) + np.float32(0.5)


@numba.njit(cache=True, fastmath=_FAST, error_model="numpy")
def _dense_stack(x: np.ndarray, weights: np.ndarray, layout: np.ndarray, at: int) -> tuple[np.ndarray, int]:  # pragma: no cover
    """x (R, d) through the Dense layers that `layout[at:]` describes: their count, then per layer
    the kernel's offset in `weights`, its two dimensions, the bias' offset and the activation.
    Returns the output and the position in `layout` after the stack."""
    count = layout[at]
    at += 1
    for _ in range(count):
        offset, depth, units, bias, code = layout[at], layout[at + 1], layout[at + 2], layout[at + 3], layout[at + 4]
        at += 5
        out = np.empty((x.shape[0], units), np.float32)
        out[:] = weights[bias: bias + units]
        _add_product(out, x, weights[offset: offset + depth * units].reshape(depth, units))
        _activate(out, code)
        x = out
    return x, at


@numba.njit(cache=True, inline="always")
def _past_steps(history_observation: np.ndarray, history_action: np.ndarray, past_actions: bool) -> np.ndarray:  # pragma: no cover
    """The past steps (B, L, ...) as rows (B * L, obs_dim [+ act_dim]) of [observation, action]."""
    batch, length, obs_dim = history_observation.shape
    act_dim = history_action.shape[2] if past_actions else 0
    past = np.empty((batch * length, obs_dim + act_dim), np.float32)
    past[:, :obs_dim] = history_observation.reshape(batch * length, obs_dim)
    if past_actions:
        past[:, obs_dim:] = history_action.reshape(batch * length, act_dim)
    return past


@numba.njit(cache=True, inline="always")
def _lstm_weights(weights: np.ndarray, layout: np.ndarray, at: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
    """The LSTM's kernel (depth, 4 units), recurrent kernel (units, 4 units) and bias, from `layout[at:]`."""
    kernel, depth, recurrent, units, bias = layout[at + 1], layout[at + 2], layout[at + 3], layout[at + 4], layout[at + 5]
    four_units = 4 * units
    return (weights[kernel: kernel + depth * four_units].reshape(depth, four_units),
            weights[recurrent: recurrent + units * four_units].reshape(units, four_units),
            weights[bias: bias + four_units])


@numba.njit(cache=True, inline="always")
def _skip_stack(layout: np.ndarray, at: int) -> int:  # pragma: no cover
    return at + 1 + 5 * layout[at]


@numba.njit(cache=True, fastmath=_FAST, error_model="numpy")
def _memory_head(x: np.ndarray, h: np.ndarray, weights: np.ndarray, layout: np.ndarray, at: int) -> np.ndarray:  # pragma: no cover
    """From the features `x` and the LSTM's last `h` (`layout[at:]` at the Dense after the LSTM):
    Dense after it, the combination over [memory, features], the output layer."""
    h, at = _dense_stack(h, weights, layout, at)
    combined = np.empty((x.shape[0], h.shape[1] + x.shape[1]), np.float32)
    combined[:, :h.shape[1]] = h
    combined[:, h.shape[1]:] = x
    x, at = _dense_stack(combined, weights, layout, at)
    x, at = _dense_stack(x, weights, layout, at)
    return x


@numba.njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def _memory_forward(current: np.ndarray, history_observation: np.ndarray, history_action: np.ndarray,
                    mask: np.ndarray, weights: np.ndarray, layout: np.ndarray) -> np.ndarray:  # pragma: no cover
    """A `memory_network`'s forward pass, as `NumpyMemoryNet.refresh` packed it: features over
    `current` (B, d); memory Dense over the past steps, the LSTM over the window, Dense after
    it; the combination over [memory, features]; the output layer."""
    x, at = _dense_stack(current, weights, layout, 0)
    past_actions = layout[at] == 1
    past, at = _dense_stack(_past_steps(history_observation, history_action, past_actions), weights, layout, at + 1)
    if layout[at] == 0:  # no LSTM: the output over the features alone
        x, at = _dense_stack(x, weights, layout, _skip_stack(layout, at + 6))
        x, at = _dense_stack(x, weights, layout, at)
        return x
    kernel, recurrent, bias = _lstm_weights(weights, layout, at)
    batch, length = mask.shape
    h = _lstm_window(past.reshape(batch, length, kernel.shape[0]), kernel, recurrent, bias, mask)
    return _memory_head(x, h, weights, layout, at + 6)


@numba.njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def _runs_step(h: np.ndarray, c: np.ndarray, step: np.ndarray, valid: np.ndarray, weights: np.ndarray,
               layout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """The LSTM runs of each row (`NumpyMemoryNet.runs`) moved on by one past step `step` (B, d).

    Run k of the result is run k + 1 given the step; the last run starts at it
    (from zero state); run 0 of the input, which has seen L steps, is dropped.
    A row whose step is not `valid` (before its episode) keeps all runs at zero.
    The step's Dense layers and input projection are computed once for all L
    runs, and the recurrent kernel is read once for all of them: the window
    pass reads it once per step.
    """
    batch, length, units = h.shape
    new_h = np.zeros_like(h)
    new_c = np.zeros_like(c)
    if not valid.any():
        return new_h, new_c
    past_actions_at = _skip_stack(layout, 0)
    x, at = _dense_stack(step, weights, layout, past_actions_at + 1)
    kernel, recurrent, bias = _lstm_weights(weights, layout, at)
    projected = np.empty((batch, 4 * units), np.float32)
    projected[:] = bias
    _add_product(projected, x, kernel)
    older = length - 1  # the runs that go on; the last one starts now
    z = np.empty((batch * older, 4 * units), np.float32)
    h_before = np.empty((batch * older, units), np.float32)
    for b in range(batch):
        for k in range(older):
            z[b * older + k] = projected[b]
            h_before[b * older + k] = h[b, k + 1]
    _add_product(z, h_before, recurrent)
    no_cell = np.zeros(units, np.float32)
    for b in range(batch):
        if not valid[b]:
            continue
        for k in range(older):
            _lstm_cell(z[b * older + k], c[b, k + 1], new_c[b, k], new_h[b, k])
        _lstm_cell(projected[b], no_cell, new_c[b, older], new_h[b, older])
    return new_h, new_c


@numba.njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def _advanced_runs(h: np.ndarray, c: np.ndarray, observation: np.ndarray, action: np.ndarray, weights: np.ndarray,
                   layout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """`_runs_step` with the past step [observation, action] of every row (B, ...), all valid."""
    batch = observation.shape[0]
    past = _past_steps(observation.reshape(batch, 1, observation.shape[1]),
                       action.reshape(action.shape[0], 1, action.shape[1]), layout[_skip_stack(layout, 0)] == 1)
    return _runs_step(h, c, past, np.ones(batch, np.bool_), weights, layout)


@numba.njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def _window_runs(history_observation: np.ndarray, history_action: np.ndarray, mask: np.ndarray, weights: np.ndarray,
                 layout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """The runs (`NumpyMemoryNet.runs`) of whole windows: their steps through `_runs_step` from none."""
    batch, length = mask.shape
    units = layout[_skip_stack(layout, _skip_stack(layout, 0) + 1) + 4]
    past = _past_steps(history_observation, history_action, layout[_skip_stack(layout, 0)] == 1)
    past = past.reshape(batch, length, past.shape[1])
    h = np.zeros((batch, length, units), np.float32)
    c = np.zeros((batch, length, units), np.float32)
    for t in range(length):
        h, c = _runs_step(h, c, np.ascontiguousarray(past[:, t]), np.ascontiguousarray(mask[:, t]), weights, layout)
    return h, c


@numba.njit(cache=True, nogil=True, fastmath=_FAST, error_model="numpy")
def _runs_output(current: np.ndarray, h: np.ndarray, weights: np.ndarray, layout: np.ndarray) -> np.ndarray:  # pragma: no cover
    """The forward pass given the window's LSTM output `h` (B, units): features, then `_memory_head`."""
    x, at = _dense_stack(current, weights, layout, 0)
    at = _skip_stack(layout, at + 1)  # past the past-actions flag and the Dense before the LSTM
    return _memory_head(x, h, weights, layout, at + 6)
