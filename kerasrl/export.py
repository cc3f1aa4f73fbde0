"""The deterministic policy as a model for serving: SavedModel, ONNX or LiteRT.

`Agent.export_policy(path, format=...)` writes a function from a batch of raw
observations (the environment's dtype: float32 vectors, uint8 frames, integer
Discrete observations) to a batch of environment actions (Box actions scaled
to the bounds, Discrete ones as int64), with the agent's preprocessing inside
and a dynamic batch dimension. The artifact runs without kerasrl:

```python
import tensorflow as tf                      # format="tf_saved_model"
policy = tf.saved_model.load("policy_savedmodel")
actions = policy.serve(observations)         # signature "serving_default" too

import onnxruntime                           # format="onnx"
session = onnxruntime.InferenceSession("policy.onnx")
actions = session.run(None, {session.get_inputs()[0].name: observations})[0]

from ai_edge_litert.interpreter import Interpreter   # format="litert"
interpreter = Interpreter(model_path="policy.tflite")
```

A policy with state (LSTM-TD3) exports its step instead: inputs `observation`,
`history_observation`, `history_action`, `history_mask` (start from
`agent.initial_state(n)`), outputs `action` and `next_history_*`, the state to
feed back on the next step.
"""

from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerasrl import spaces

# Each format and the modules writing it needs beyond TensorFlow (all in the extra of the format's name).
FORMATS = {"tf_saved_model": (), "onnx": ("tf2onnx", "onnx"), "litert": ()}


class PolicyModel(keras.Model):
    """An agent's deterministic policy from raw observations to environment actions.

    Holds only the policy networks (not the critics or optimizers), so the
    exported artifact carries only their weights.
    """

    def __init__(self, agent: Any, **kwargs: Any):
        super().__init__(name=f"{agent.name}_policy", **kwargs)
        self.agent_ref = [agent]  # a list: Keras does not track it, so the agent's other weights stay out
        self.networks = list(agent.policy_networks().values())
        self.observation_shape = agent.observation_space.shape
        self.observation_dtype = spaces.observation_dtype(agent.observation_space).name

    def call(self, inputs: Any) -> Any:
        agent = self.agent_ref[0]
        # With state, `inputs` is a list: the observation and the state's parts, in `input_signature`'s order.
        step = (lambda x: agent.policy_step(*x)) if agent.stateful else agent.policy_action
        if agent.flatten_observations and not agent.stateful:
            return step(inputs)
        # Convolutions and the unrolled LSTM fail on an empty batch in TensorFlow's CPU kernels or in
        # LiteRT: an empty batch runs as one zero row, and the answer is cut back to none. (A tf.cond would
        # skip the work, but tf2onnx cannot convert convolutions inside one.) The zero row is always
        # appended and cut off: concatenating an empty pad made LiteRT's XNNPack delegate give a recurrent
        # step wrong answers in about 1 run in 3, and tf.pad of a computed width needs Flex ops for uint8.
        n = tf.shape(tf.nest.flatten(inputs)[0])[0]
        pad = lambda x: tf.concat([x, tf.zeros(tf.concat([[1], tf.shape(x)[1:]], 0), x.dtype)], 0)[:tf.maximum(n, 1)]
        return tf.nest.map_structure(lambda y: y[:n], step(tf.nest.map_structure(pad, inputs)))

    def input_signature(self) -> list[Any]:
        """The observation batch; with state, one list of it and the state's parts (named inputs)."""
        agent = self.agent_ref[0]
        observation = tf.TensorSpec((None,) + tuple(self.observation_shape), self.observation_dtype, name="observation")
        if not agent.stateful:
            return [observation]
        state = [tf.TensorSpec((None,) + value.shape[1:], value.dtype, name=f"history_{name}")
                 for name, value in agent.initial_state(1)._asdict().items()
                 if isinstance(value, np.ndarray)]  # not the numpy actor's cache
        return [[observation, *state]]


def export_policy(agent: Any, path: str | os.PathLike, format: str = "tf_saved_model", verbose: bool = False) -> str:
    """Writes `agent`'s deterministic policy to `path`; see `Agent.export_policy`."""
    if format not in FORMATS:
        raise ValueError(f"Unknown export format {format!r}; use one of {', '.join(FORMATS)}.")
    for module in FORMATS[format]:
        try:
            __import__(module)
        except ImportError:
            raise ImportError(f"Exporting to {format} needs {module}: pip install 'kerasrl[{format}]'.") from None
    model = PolicyModel(agent)
    signature = model.input_signature()
    model(*tf.nest.map_structure(lambda spec: tf.zeros([1] + spec.shape.as_list()[1:], spec.dtype),
                                 signature))  # builds the model
    path = os.fspath(path)
    if format == "tf_saved_model":
        _write_saved_model(model, signature, path)
    else:
        model.export(path, format=format, input_signature=signature, verbose=verbose)
    return path


def _write_saved_model(model: PolicyModel, signature: list[Any], path: str) -> None:
    """A SavedModel whose functions hold the weights as constants.

    Keras' export keeps them as variables that live with the loaded object, so
    `tf.saved_model.load(path).serve(obs)` in one expression (the object gone
    before the call) fails with "variables which have been deleted"; a frozen
    graph has nothing to lose. Endpoint `serve` (the signature's structure) and
    signature `serving_default` (flat named inputs; outputs by name, or
    `output_0`).
    """
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = tf.function(model.call, input_signature=signature).get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    flat_specs = tf.nest.flatten(signature)

    def serve(*args: Any) -> Any:
        return tf.nest.pack_sequence_as(concrete.structured_outputs, frozen(*tf.nest.flatten(args)))

    def serving_default(*flat: Any) -> dict[str, Any]:
        outputs = serve(*tf.nest.pack_sequence_as(signature, list(flat)))
        return outputs if isinstance(outputs, dict) else {"output_0": outputs}

    module = tf.Module()
    module.serve = tf.function(serve, input_signature=signature)
    default = tf.function(serving_default, input_signature=flat_specs).get_concrete_function()
    tf.saved_model.save(module, path, signatures={"serving_default": default})
