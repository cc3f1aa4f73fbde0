"""Multilayer perceptrons and Q-heads for agents, and a numpy forward pass for cheap acting."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras
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
