"""The `kerasrl` command line: train a tiny run, evaluate it, resume it, reject bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import gymnasium as gym
import keras
import numpy as np
import pytest

from kerasrl import cli

# 650 env steps - 100 warm-up = 550 updates: epochs of 250, 250 and a shorter 50.
TINY = ["--learning-starts", "100", "--hidden", "16", "16", "--batch-size", "32", "--eval-episodes", "1",
        "--epoch-eval-episodes", "1", "--steps-per-epoch", "250", "--verbose", "0"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "sac-pendulum"
    code = cli.main(["train", "sac", "Pendulum-v1", "--steps", "650", "--checkpoint-every", "300",
                     "--out", str(out), *TINY])
    assert code == 0
    return out


def test_train_writes_the_run_folder(run_dir):
    assert (run_dir / "agent.keras").is_file()
    with open(run_dir / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]  # the last, shorter epoch included
    assert {"episode_return", "eval_return", "critic_loss", "env_steps"} <= set(rows[0])
    assert not any(k.startswith("val_") for k in rows[0])
    assert rows[-1]["eval_return"] not in ("", "NA", "nan")
    assert float(rows[-1]["env_steps"]) >= 650
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents*"))
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["episodes"] == 1 and len(result["returns"]) == 1
    assert result["mean"] == pytest.approx(result["returns"][0])
    assert result["gradient_steps"] == 550
    config = json.loads((run_dir / "config.json").read_text())
    assert config["algo"] == "sac" and config["env"] == "Pendulum-v1" and config["hidden"] == [16, 16]
    assert list((run_dir / "checkpoints").glob("ckpt-*"))


def test_eval_loads_the_agent(run_dir, tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = cli.main(["eval", str(run_dir / "agent.keras"), "Pendulum-v1", "--episodes", "2", "--seed", "0",
                     "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "episode 2: return" in printed and "±" in printed
    result = json.loads(out.read_text())
    assert len(result["returns"]) == 2 and result["deterministic"] is True
    # The same returns as evaluating the saved agent in Python with the same seed.
    agent = keras.saving.load_model(run_dir / "agent.keras")
    expected = agent.evaluate_env(gym.make("Pendulum-v1"), episodes=2, seed=0, deterministic=True)
    np.testing.assert_allclose(result["returns"], expected, rtol=1e-6)


def test_resume_continues_to_more_steps(run_dir, capsys):
    code = cli.main(["train", "sac", "Pendulum-v1", "--steps", "700", "--resume", "--out", str(run_dir), *TINY])
    assert code == 0
    assert "Resuming from" in capsys.readouterr().out
    with open(run_dir / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    # As a 700-step run would have: epochs of 250, 250 and 100 (the 650-step run's last one, 50, grows).
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert float(rows[-1]["env_steps"]) == 700
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["env_steps"] == 700 and result["gradient_steps"] == 600
    assert len(json.loads((run_dir / "config.json").read_text())["resumes"]) == 1


def test_existing_run_needs_resume_or_overwrite(run_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "sac", "Pendulum-v1", "--steps", "650", "--out", str(run_dir), *TINY])
    assert exit_info.value.code == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["train", "nope", "Pendulum-v1"], "unknown algorithm 'nope'"),
    (["train", "sac", "Pendulum-v9"], "unknown environment id 'Pendulum-v9'"),
    (["train", "sac", "NoSuchEnv-v0"], "unknown environment id 'NoSuchEnv-v0'"),
    (["train", "sac", "Pendulum-v1", "--steps", "0"], "--steps"),
    (["train", "sac", "Pendulum-v1", "--tau", "0"], "--tau must be in (0, 1]"),
    (["train", "sac", "Pendulum-v1", "--n-step", "two"], "--n-step must be"),
    (["train", "dqn", "Pendulum-v1"], "Discrete action space"),
    (["eval", "missing.keras", "Pendulum-v1"], "no such file"),
])
def test_bad_input_is_a_clear_error(argv, message, tmp_path, capsys):
    if argv[0] == "train":
        argv = argv + ["--out", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_too_few_steps_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "sac", "Pendulum-v1", "--steps", "100", "--out", str(tmp_path / "run"), *TINY])
    assert "leaves no gradient steps" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_eval_rejects_an_env_with_other_spaces(run_dir, capsys):
    with pytest.raises(SystemExit):
        cli.main(["eval", str(run_dir / "agent.keras"), "CartPole-v1"])
    assert "observation space" in capsys.readouterr().err


def test_plan_epochs():
    assert cli.plan_epochs(2500, 1000) == [1000, 1000, 500]
    assert cli.plan_epochs(2000, 1000) == [1000, 1000]
    assert cli.plan_epochs(300, 1000) == [300]
    assert cli.plan_epochs(0, 1000) == []


def test_the_registry_names_the_agents():
    import kerasrl

    assert cli.ALGOS["sac"] is kerasrl.SAC and cli.ALGOS["dqn"] is kerasrl.DQN
    assert cli.ALGOS["td3"] is kerasrl.TD3 and cli.ALGOS["ddpg"] is kerasrl.DDPG


def test_train_dqn_with_prioritized_n_step_replay(tmp_path):
    import keras
    import kerasrl

    out = tmp_path / "dqn-cartpole"
    code = cli.main(["train", "dqn", "CartPole-v1", "--steps", "400", "--out", str(out), "--prioritized",
                     "--n-step", "3", "--checkpoint-every", "300", *TINY])
    assert code == 0
    agent = keras.saving.load_model(out / "agent.keras")
    assert isinstance(agent, kerasrl.DQN) and agent.tau == 1.0  # DQN's own default: target copies
    _, data = kerasrl.resume(out / "checkpoints")
    assert isinstance(data.buffer, kerasrl.PrioritizedReplayBuffer) and data.buffer.n_step == 3


@pytest.mark.parametrize("algo,noise_type", [("td3", "normal"), ("ddpg", "ou")])
def test_train_td3_and_ddpg_with_their_noise_then_plot(algo, noise_type, tmp_path, run_dir):
    import keras
    import kerasrl

    runs = []
    for seed in (0, 1):
        out = tmp_path / f"{algo}-s{seed}"
        code = cli.main(["train", algo, "Pendulum-v1", "--steps", "400", "--out", str(out), "--seed", str(seed),
                         "--noise-type", noise_type, "--noise-std", "0.3", "--checkpoint-every", "300", *TINY])
        assert code == 0
        runs.append(out)
    agent = keras.saving.load_model(runs[0] / "agent.keras")
    assert type(agent) is cli.ALGOS[algo] and agent.hidden == (16, 16)
    _, data = kerasrl.resume(runs[0] / "checkpoints")  # the noise comes back with the dataset
    expected = kerasrl.noise.Gaussian if noise_type == "normal" else kerasrl.noise.OrnsteinUhlenbeck
    assert type(data.action_noise) is expected and data.action_noise.sigma(0) == 0.3

    image = tmp_path / "curves" / "curve.png"
    code = cli.main(["plot", *map(str, runs), str(run_dir), "-o", str(image), "--title", "Pendulum-v1"])
    assert code == 0
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.stat().st_size > 10_000


def test_train_with_bfloat16_hidden_layers(tmp_path):
    import keras

    out = tmp_path / "td3-bf16"
    assert cli.main(["train", "td3", "Pendulum-v1", "--steps", "300", "--out", str(out), "--dtype", "mixed_bfloat16",
                     *TINY]) == 0
    agent = keras.saving.load_model(out / "agent.keras")
    assert agent.dtype_policy.name == "mixed_bfloat16"
    assert agent.actor.layers[0].compute_dtype == "bfloat16" and agent.actor.layers[-1].compute_dtype == "float32"


def test_plot_mean_and_band_across_seeds(tmp_path):
    from kerasrl import plot

    for seed, (steps, returns) in enumerate([([100, 200, 300], [-10, 0, 10]), ([150, 250], [0, 20])]):
        folder = tmp_path / f"s{seed}"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"algo": "td3", "env": "Pendulum-v1", "seed": seed}))
        rows = ["epoch,env_steps,episode_return"] + [f"{i},{s},{r}" for i, (s, r) in enumerate(zip(steps, returns))]
        (folder / "progress.csv").write_text("\n".join(rows) + "\n")
    runs = [plot.load_run(tmp_path / "s0"), plot.load_run(tmp_path / "s1")]
    assert runs[0].label == runs[1].label == "td3 Pendulum-v1"
    steps, mean, low, high = plot.mean_and_band(runs, "episode_return")
    # Common grid: the logged steps inside the range both runs cover.
    np.testing.assert_array_equal(steps, [150, 200, 250])
    s0 = np.interp(steps, [100, 200, 300], [-10, 0, 10])
    s1 = np.interp(steps, [150, 250], [0, 20])
    np.testing.assert_allclose(mean, (s0 + s1) / 2)
    np.testing.assert_allclose(low, np.minimum(s0, s1))
    np.testing.assert_allclose(high, np.maximum(s0, s1))
    assert len(plot.mean_and_band(runs, "eval_return")[0]) == 0  # not logged


def test_plot_rejects_a_folder_without_progress(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["plot", str(tmp_path), "-o", str(tmp_path / "c.png")])
    assert exit_info.value.code == 2
    assert "no progress.csv" in capsys.readouterr().err


def test_python_m_kerasrl_help():
    done = subprocess.run([sys.executable, "-m", "kerasrl", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "train" in done.stdout and "eval" in done.stdout


NET_TOML = """
steps = 900            # the command line's --steps overrides this
batch_size = 32
learning_starts = 100
steps_per_epoch = 100
eval_episodes = 1
epoch_eval_episodes = 0
verbose = 0

[agent]
history_length = 3
memory_hidden = [16]
lstm_units = 16
feature_hidden = [16]
hidden = [16]
"""


def test_train_lstm_td3_on_a_pomdp_with_a_toml_config_then_resume_and_eval(tmp_path, capsys):
    import kerasrl

    config = tmp_path / "net.toml"
    config.write_text(NET_TOML)
    out = tmp_path / "lstm"
    common = ["train", "lstm_td3", "Pendulum-v1", "--pomdp", "remove_velocity", "--config", str(config),
              "--out", str(out)]
    assert cli.main(common + ["--steps", "250", "--checkpoint-every", "100"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["steps"] == 250 and saved["batch_size"] == 32 and saved["pomdp"] == "remove_velocity"
    agent = keras.saving.load_model(out / "agent.keras")
    assert isinstance(agent, kerasrl.LSTMTD3) and agent.history_length == 3 and agent.lstm_units == 16
    assert agent.observation_space.shape == (2,)  # the angular velocity is hidden
    assert int(agent.num_gradient_steps.numpy()) == 150
    assert cli.main(common + ["--steps", "300", "--resume"]) == 0
    assert int(keras.saving.load_model(out / "agent.keras").num_gradient_steps.numpy()) == 200
    assert cli.main(["eval", str(out / "agent.keras"), "Pendulum-v1", "--pomdp", "remove_velocity",
                     "--episodes", "1"]) == 0
    assert "over 1 episode(s)" in capsys.readouterr().out


@pytest.mark.parametrize("content, message", [
    ("stepz = 5", "unknown option 'stepz'"),
    ("steps = 5.5", "steps must be an integer, got 5.5"),
    ("hidden = 16", "hidden must be a non-empty list"),
    ("dtype = 'float64'", "dtype must be one of float32, mixed_bfloat16"),
    ("steps = [", "is not valid TOML"),
    ("[agent]\nlstm_unitz = 5", "[agent] has unknown argument(s) lstm_unitz for lstm_td3"),
    ("[agent]\nlstm_units = 'big'", "[agent] lstm_units must be an integer, got 'big'"),
    ("[agent]\nhidden = [1.5]", "[agent] hidden must be a list of integers"),
])
def test_bad_config_files_name_the_key_and_the_file(content, message, tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "lstm_td3", "Pendulum-v1", "--config", str(config), "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and str(config) in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("algo, env_id, options, message", [
    ("lstm_td3", "Pendulum-v1", ["--pomdp", "blur"], "Unknown POMDP kind 'blur'"),
    ("lstm_td3", "BipedalWalker-v3", ["--pomdp", "remove_velocity", "--n-envs", "2"], "known tasks: Pendulum-v1"),
    ("td3", "Pendulum-v1", ["--history-length", "3"], "--history-length applies to lstm_td3, not td3"),
    ("lstm_td3", "Pendulum-v1", ["--n-step", "episode"], "needs a whole number n_step"),
])
def test_bad_pomdp_and_history_options_are_named(algo, env_id, options, message, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", algo, env_id, *options, "--out", str(tmp_path / "run")])
    assert message in capsys.readouterr().err


def test_train_ppo_with_a_toml_config_then_resume_to_more_rollouts(tmp_path):
    config = tmp_path / "ppo.toml"
    config.write_text("[agent]\nn_steps = 64\nbatch_size = 32\nn_epochs = 2\nhidden = [16]\n")
    out = tmp_path / "ppo"
    common = ["--config", str(config), "--n-envs", "2", "--checkpoint-every", "128", "--out", str(out),
              "--eval-episodes", "1", "--epoch-eval-episodes", "0", "--verbose", "0"]
    assert cli.main(["train", "ppo", "CartPole-v1", "--steps", "256", *common]) == 0
    result = json.loads((out / "eval.json").read_text())
    # 128 env steps per rollout (64 x 2 copies), 8 minibatches each (2 passes of 4): 2 rollouts.
    assert result["env_steps"] == 256 and result["gradient_steps"] == 16
    assert cli.main(["train", "ppo", "CartPole-v1", "--steps", "512", "--resume", *common]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["env_steps"] == 512 and result["gradient_steps"] == 32


@pytest.mark.parametrize("algo", ["a2c", "ac"])
def test_train_a2c_and_the_actor_critic(algo, tmp_path):
    out = tmp_path / algo
    assert cli.main(["train", algo, "CartPole-v1", "--steps", "300", "--n-envs", "2" if algo == "a2c" else "1",
                     "--hidden", "16", "--out", str(out), "--eval-episodes", "1", "--epoch-eval-episodes", "1",
                     "--verbose", "0"]) == 0
    result = json.loads((out / "eval.json").read_text())
    agent = keras.saving.load_model(out / "agent.keras")
    if algo == "a2c":  # rollouts of 5 steps x 2 copies, one update each
        assert result["env_steps"] == 300 and result["gradient_steps"] == 30
        assert isinstance(agent.network_optimizer, keras.optimizers.RMSprop)
    else:  # whole episodes, one update each, until 300 steps
        assert 300 <= result["env_steps"] < 300 + 500 and result["gradient_steps"] >= 1
        assert float(agent.network_optimizer.learning_rate.numpy()) == pytest.approx(1e-2)
