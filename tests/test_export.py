"""export_policy: every agent's deterministic policy, run by each runtime in a process without kerasrl,
matches `act(deterministic=True)` on observations from the environment."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest

import kerasrl
from kerasrl import cli
from support import HIDDEN

FORMATS = {"tf_saved_model": "policy_savedmodel", "onnx": "policy.onnx", "litert": "policy.tflite"}

# Runs in a fresh interpreter: loads each artifact with its own runtime only, checks that kerasrl was never
# imported, and writes the actions for the full batch, a batch of one and an empty batch.
RUNNER = textwrap.dedent("""
    import json, sys
    import numpy as np
    folder = sys.argv[1]
    obs = np.load(folder + "/observations.npy")
    batches = {"all": obs, "one": obs[:1], "empty": obs[:0]}
    out = {}

    import onnxruntime
    session = onnxruntime.InferenceSession(folder + "/policy.onnx")
    name = session.get_inputs()[0].name
    out["onnx"] = {k: session.run(None, {name: v})[0] for k, v in batches.items()}

    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=folder + "/policy.tflite")
    inp, res = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    out["litert"] = {}
    for k, v in batches.items():
        interpreter.resize_tensor_input(inp["index"], v.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], v)
        interpreter.invoke()
        out["litert"][k] = interpreter.get_tensor(res["index"])

    import tensorflow as tf
    policy = tf.saved_model.load(folder + "/policy_savedmodel")
    out["tf_saved_model"] = {k: policy.serve(v).numpy() for k, v in batches.items()}
    serving = policy.signatures["serving_default"]
    out["signature"] = list(serving(tf.constant(obs[:1])).values())[0].numpy()

    assert not [m for m in sys.modules if m.split(".")[0] == "kerasrl"], "the runtime imported kerasrl"
    np.savez(folder + "/actions.npz", **{f"{fmt}_{k}": v for fmt, d in out.items() if fmt != "signature"
                                         for k, v in d.items()}, signature=out["signature"])
""")


def observations(env: gym.Env, count: int = 1000, seed: int = 0) -> np.ndarray:
    """`count` observations visited by random actions (episodes restarted as they end)."""
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    out = []
    while len(out) < count:
        out.append(np.asarray(obs))
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    dtype = np.int64 if isinstance(env.observation_space, gym.spaces.Discrete) else env.observation_space.dtype
    return np.stack(out).astype(dtype)


def atari_env():
    return kerasrl.envs.make_atari("BreakoutNoFrameskip-v4", training=False)


def normalized_ppo(env):
    """A PPO whose observation statistics are far from the identity, so the export must carry them."""
    agent = kerasrl.PPO.from_env(env, hidden=HIDDEN, seed=0, normalize_observations=True)
    agent.observation_mean.assign([0.5, -0.2, 1.0])
    agent.observation_var.assign([0.1, 0.3, 4.0])
    return agent


CASES = {
    "sac": (lambda: gym.make("Pendulum-v1"), lambda env: kerasrl.SAC.from_env(env, hidden=HIDDEN, seed=0), 1000),
    "sac-discrete": (lambda: gym.make("LunarLander-v3"),
                     lambda env: kerasrl.SAC.from_env(env, hidden=HIDDEN, seed=0), 1000),
    "td3": (lambda: gym.make("MountainCarContinuous-v0"),
            lambda env: kerasrl.TD3.from_env(env, hidden=HIDDEN, seed=0), 1000),
    "ddpg": (lambda: gym.make("Pendulum-v1"), lambda env: kerasrl.DDPG.from_env(env, hidden=HIDDEN, seed=0), 1000),
    "dqn": (lambda: gym.make("CartPole-v1"), lambda env: kerasrl.DQN.from_env(env, hidden=HIDDEN, seed=0), 1000),
    "dqn-discrete-observations": (lambda: gym.make("FrozenLake-v1"),
                                  lambda env: kerasrl.DQN.from_env(env, hidden=HIDDEN, dueling=False, seed=0), 1000),
    "dqn-nature-cnn": (atari_env, lambda env: kerasrl.DQN.from_env(env, torso="nature_cnn", seed=0), 1000),
    "ppo-box-normalized": (lambda: gym.make("Pendulum-v1"), lambda env: normalized_ppo(env), 1000),
    "actor-critic": (lambda: gym.make("CartPole-v1"),
                     lambda env: kerasrl.ActorCritic.from_env(env, hidden=HIDDEN, seed=0), 1000),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_runtime_returns_the_actions_act_returns(case, tmp_path):
    make_env, make_agent, count = CASES[case]
    env = make_env()
    agent = make_agent(env)
    obs = observations(env, count)
    np.save(tmp_path / "observations.npy", obs)
    for fmt, name in FORMATS.items():
        assert agent.export_policy(str(tmp_path / name), format=fmt) == str(tmp_path / name)
    run = subprocess.run([sys.executable, "-c", RUNNER, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    got = np.load(tmp_path / "actions.npz")
    expected = agent.act(obs, deterministic=True)
    for fmt in FORMATS:
        for key, want in (("all", expected), ("one", expected[:1]), ("empty", expected[:0])):
            actions = got[f"{fmt}_{key}"]
            assert actions.shape == want.shape, (fmt, key)
            if agent.discrete:
                assert actions.dtype == np.int64
                np.testing.assert_array_equal(actions, want, err_msg=f"{fmt} {key}")
            else:
                np.testing.assert_allclose(actions, want, rtol=0, atol=1e-5, err_msg=f"{fmt} {key}")
    np.testing.assert_array_equal(got["signature"], got["tf_saved_model_one"])


def test_keras_export_writes_the_policy_and_bad_requests_say_what_is_wrong(tmp_path, monkeypatch):
    env = gym.make("CartPole-v1")
    agent = kerasrl.DQN.from_env(env, hidden=HIDDEN, seed=0)
    agent.export(str(tmp_path / "keras_export"))  # Keras' own export: the same policy, no call() needed
    import tensorflow as tf
    obs = observations(env, 50)
    # In one expression: the frozen SavedModel needs no living object for its weights.
    np.testing.assert_array_equal(tf.saved_model.load(str(tmp_path / "keras_export")).serve(obs).numpy(),
                                  agent.act(obs, deterministic=True))
    with pytest.raises(ValueError, match="Unknown export format 'torchscript'"):
        agent.export_policy(str(tmp_path / "x"), format="torchscript")
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # as if the onnx extra were not installed
    with pytest.raises(ImportError, match=r"pip install 'kerasrl\[onnx\]'"):
        agent.export_policy(str(tmp_path / "x.onnx"), format="onnx")


def test_cli_export_writes_each_format_from_a_saved_agent(tmp_path, capsys):
    env = gym.make("Pendulum-v1")
    agent = kerasrl.TD3.from_env(env, hidden=HIDDEN, seed=0)
    model = tmp_path / "agent.keras"
    agent.save(model)
    assert cli.main(["export", str(model), "--format", "onnx", "-o", str(tmp_path / "p.onnx")]) == 0
    assert "Wrote" in capsys.readouterr().out
    import onnxruntime
    session = onnxruntime.InferenceSession(str(tmp_path / "p.onnx"))
    obs = observations(env, 20)
    np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: obs})[0],
                               agent.act(obs, deterministic=True), atol=1e-5)
    with pytest.raises(SystemExit) as exit_info:  # never overwrites
        cli.main(["export", str(model), "--format", "onnx", "-o", str(tmp_path / "p.onnx")])
    assert exit_info.value.code == 2 and "exists" in capsys.readouterr().err


# The recurrent step: state in, state out, chained over a trajectory by each runtime.
RECURRENT_RUNNER = textwrap.dedent("""
    import sys
    import numpy as np
    folder = sys.argv[1]
    data = np.load(folder + "/trajectory.npz")
    obs, names = data["observations"], ["history_observation", "history_action", "history_mask"]
    initial = {name: data[name] for name in names}

    def chain(step, batch):
        state = {name: value[:batch] for name, value in initial.items()}
        actions = []
        for t in range(len(obs)):
            out = step({"observation": obs[t, :batch], **state})
            actions.append(out["action"])
            state = {name: out["next_" + name] for name in names}
        return np.stack(actions)

    import onnxruntime
    session = onnxruntime.InferenceSession(folder + "/policy.onnx")
    outputs = [o.name for o in session.get_outputs()]
    onnx_step = lambda feed: dict(zip(outputs, session.run(None, feed)))

    from ai_edge_litert.interpreter import Interpreter
    runner = Interpreter(model_path=folder + "/policy.tflite").get_signature_runner()
    litert_step = lambda feed: runner(**feed)

    import tensorflow as tf
    policy = tf.saved_model.load(folder + "/policy_savedmodel")
    serve = lambda feed: {k: v.numpy() for k, v in policy.serve([feed["observation"]] + [feed[n] for n in names]).items()}

    assert not [m for m in sys.modules if m.split(".")[0] == "kerasrl"], "the runtime imported kerasrl"
    results = {}
    for fmt, step in (("onnx", onnx_step), ("litert", litert_step), ("tf_saved_model", serve)):
        results[fmt + "_all"] = chain(step, obs.shape[1])
        results[fmt + "_one"] = chain(step, 1)
        results[fmt + "_empty"] = step({"observation": obs[0, :0], **{n: v[:0] for n, v in initial.items()}})["action"]
    np.savez(folder + "/actions.npz", **results)
""")


def test_a_recurrent_policy_exports_its_step_with_the_state_as_inputs_and_outputs(tmp_path):
    from kerasrl.envs import pomdp
    copies, steps = 4, 250  # 1,000 observations
    env = gym.vector.SyncVectorEnv([lambda: pomdp.make("Pendulum-v1", "remove_velocity")] * copies)
    agent = kerasrl.LSTMTD3.from_env(env, history_length=3, memory_hidden=(16,), lstm_units=16, feature_hidden=(16,),
                                     hidden=(16,), seed=0)
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    trajectory = []
    for _ in range(steps):  # Pendulum's 200-step episodes: every copy restarts once (the state is not reset here)
        trajectory.append(obs)
        obs, *_ = env.step(env.action_space.sample())
    trajectory = np.stack(trajectory).astype(np.float32)
    initial = agent.initial_state(copies)
    np.savez(tmp_path / "trajectory.npz", observations=trajectory, history_observation=initial.observation,
             history_action=initial.action, history_mask=initial.mask)
    for fmt, name in FORMATS.items():
        agent.export_policy(str(tmp_path / name), format=fmt)
    run = subprocess.run([sys.executable, "-c", RECURRENT_RUNNER, str(tmp_path)], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    got = np.load(tmp_path / "actions.npz")

    def chained(batch):
        state, actions = agent.initial_state(batch), []
        for t in range(steps):
            action, state = agent.act(trajectory[t, :batch], state=state, deterministic=True)
            actions.append(action)
        return np.stack(actions)

    expected = {"all": chained(copies), "one": chained(1)}
    for fmt in FORMATS:
        for key, want in expected.items():
            np.testing.assert_allclose(got[f"{fmt}_{key}"], want, rtol=0, atol=1e-5, err_msg=f"{fmt} {key}")
        assert got[f"{fmt}_empty"].shape == (0, 1)
