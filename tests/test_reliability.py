"""Nothing lost, nothing misleading: evaluation of the current weights, interrupted and
concurrent CLI runs, damaged checkpoints, long runs' memory, start-up noise, discrete SAC's defaults."""

from __future__ import annotations

import csv
import gc
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc

import gymnasium as gym
import keras
import keras_tuner
import numpy as np
import pytest

import kerasrl
from kerasrl import callbacks as rlcb
from kerasrl import cli
from kerasrl.tuning import SACHyperModel
from support import make_data, make_sac


# -------------------------------------------------- evaluation of current weights
def test_eval_callback_selects_the_weights_model_checkpoint_saves(tmp_path):
    """ModelCheckpoint(monitor="eval_return") must save weights whose evaluation is the logged one."""
    env = gym.make("Pendulum-v1")
    agent = make_sac(env)
    # A collector that never refreshes its acting copy during fit: the snapshot stays at the
    # weights fit started with, so an evaluation through it would not see the updates.
    data = make_data(env, agent, learning_starts=32, policy_sync_every=10_000)
    best = tmp_path / "best.keras"
    history = agent.fit(data, epochs=3, steps_per_epoch=40, verbose=0, callbacks=[
        rlcb.EvalCallback(gym.make("Pendulum-v1"), episodes=1, seed=7),
        keras.callbacks.ModelCheckpoint(str(best), monitor="eval_return", mode="max", save_best_only=True)])
    logged = history.history["eval_return"]
    saved = keras.saving.load_model(best)
    again = saved.evaluate_env(gym.make("Pendulum-v1"), episodes=1, seed=7)
    assert again[0] == pytest.approx(max(logged), abs=1e-6)
    # And the last evaluation is the final weights' one.
    final = agent.evaluate_env(gym.make("Pendulum-v1"), episodes=1, seed=7)
    assert final[0] == pytest.approx(logged[-1], abs=1e-6)


def test_act_after_fit_uses_the_trained_weights():
    env = gym.make("Pendulum-v1")
    agent = make_sac(env)
    obs, _ = env.reset(seed=0)
    before = agent.act(obs, deterministic=True)
    agent.fit(make_data(env, agent, policy_sync_every=10_000), epochs=1, steps_per_epoch=30, verbose=0)
    copy = make_sac(env, compile=False)  # built from the weights as they are now
    copy.set_weights(agent.get_weights())
    np.testing.assert_allclose(agent.act(obs, deterministic=True), copy.act(obs, deterministic=True), rtol=0, atol=0)
    assert not np.allclose(before, agent.act(obs, deterministic=True))


def test_evaluate_env_needs_an_episode():
    agent = make_sac(gym.make("Pendulum-v1"))
    with pytest.raises(ValueError, match="episodes >= 1"):
        agent.evaluate_env(gym.make("Pendulum-v1"), episodes=0)


# ------------------------------------------------------- interrupted and concurrent runs
# 900 env steps - 100 warm-up = 800 updates in 8 epochs of 100; a checkpoint every 230 env steps
# (mid-epoch, while the collector has batches sampled ahead of the updates).
RUN = ["train", "dqn", "CartPole-v1", "--steps", "900", "--learning-starts", "100", "--hidden", "16", "16",
       "--batch-size", "32", "--steps-per-epoch", "100", "--checkpoint-every", "230", "--eval-episodes", "1",
       "--epoch-eval-episodes", "0", "--verbose", "0"]


def progress_rows(run_dir):
    with open(run_dir / "progress.csv") as f:
        return list(csv.DictReader(f))


def test_killed_run_resumes_as_if_never_interrupted(tmp_path, capsys):
    whole = tmp_path / "whole"
    assert cli.main([*RUN, "--out", str(whole)]) == 0
    expected = json.loads((whole / "eval.json").read_text())
    assert (expected["gradient_steps"], expected["env_steps"]) == (800, 900)

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "kerasrl", *RUN, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        # Kill it mid-run: after a checkpoint and after epochs logged past it.
        while not (list(killed.glob("checkpoints/ckpt-*")) and (killed / "progress.csv").exists()
                   and len(progress_rows(killed)) >= 4):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # While it runs, the folder is claimed: a second run on it refuses.
        with pytest.raises(SystemExit) as refused:
            cli.main([*RUN, "--resume", "--out", str(killed)])
        assert refused.value.code == 2
        assert "in use by another kerasrl train" in capsys.readouterr().err
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert not (killed / "eval.json").exists(), "the run ended before it was killed; the test proves nothing"

    # The killed process's claim died with it.
    assert cli.main([*RUN, "--resume", "--out", str(killed)]) == 0
    result = json.loads((killed / "eval.json").read_text())
    assert (result["gradient_steps"], result["env_steps"]) == (800, 900)
    rows, expected_rows = progress_rows(killed), progress_rows(whole)
    assert [int(r["epoch"]) for r in rows] == list(range(8)) == [int(r["epoch"]) for r in expected_rows]
    assert [float(r["env_steps"]) for r in rows] == [float(r["env_steps"]) for r in expected_rows]
    assert list(rows[0]) == list(expected_rows[0])


def test_resume_samples_the_batches_ahead_again(tmp_path):
    """A checkpoint taken while batches wait for their updates: the resumed run ends at the same counts."""
    env = gym.make("Pendulum-v1")
    agent = make_sac(env)
    data = make_data(env, agent, learning_starts=20, batch_size=8)  # chunks of 4 batches, one chunk prefetched
    agent.fit(data, epochs=1, steps_per_epoch=40, verbose=0,
              callbacks=[rlcb.Checkpoint(tmp_path, every_steps=7, keep=100)])
    assert (data.env_steps, int(agent.num_gradient_steps.numpy())) == (60, 40)
    states = {}
    for folder in sorted(tmp_path.glob("ckpt-*")):
        states[folder] = json.loads((folder / "state.json").read_text())["collector"]
    ahead = [folder for folder, state in states.items() if state["batches_ahead"] > 0 and state["env_steps"] < 60]
    assert ahead, states
    for folder in sorted(tmp_path.glob("ckpt-*")):
        if folder > ahead[0]:
            shutil.rmtree(folder)
    again, data2 = rlcb.resume(tmp_path, gym.make("Pendulum-v1"))
    done = int(again.num_gradient_steps.numpy())
    assert data2.env_steps == 20 + done + states[ahead[0]]["batches_ahead"]
    again.fit(data2, epochs=1, steps_per_epoch=40 - done, verbose=0)
    assert (data2.env_steps, int(again.num_gradient_steps.numpy())) == (60, 40)


def test_concurrent_runs_on_one_folder(tmp_path, capsys):
    out = tmp_path / "run"
    claim = cli.RunFolderClaim(out)  # another kerasrl train holds the folder
    try:
        with pytest.raises(SystemExit) as refused:
            cli.main([*RUN, "--out", str(out)])
        assert refused.value.code == 2
        assert f"{out} is in use by another kerasrl train (pid {os.getpid()})" in capsys.readouterr().err
        assert os.listdir(out) == [cli.CLAIM_FILE]  # the refused run wrote nothing
    finally:
        claim.release()
    assert cli.main([*RUN, "--steps", "300", "--checkpoint-every", "0", "--out", str(out)]) == 0


def test_a_refused_run_leaves_no_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main([*RUN, "--steps", "50", "--out", str(tmp_path / "run")])
    assert "leaves no gradient steps" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ damaged checkpoints
def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_resume_falls_back_from_a_damaged_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main([*RUN, "--out", str(out)]) == 0
    folders = sorted((out / "checkpoints").glob("ckpt-*"))
    assert len(folders) == 3
    newest, older = folders[-1], folders[-2]
    truncate(newest / "buffer.npz")
    capsys.readouterr()

    assert cli.main([*RUN, "--resume", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    damaged_lines = [line for line in captured.err.splitlines() if "is damaged" in line]
    assert len(damaged_lines) == 1 and str(newest / "buffer.npz") in damaged_lines[0]
    assert "Traceback" not in captured.err
    assert f"Resuming from {older}" in captured.out
    # Nothing deleted: the damaged checkpoint is kept aside, whole as it was.
    aside = out / "checkpoints" / f"damaged-{newest.name}"
    assert sorted(os.listdir(aside)) == ["agent.keras", "buffer.npz", "state.json"]
    result = json.loads((out / "eval.json").read_text())
    assert (result["gradient_steps"], result["env_steps"]) == (800, 900)
    assert [int(r["epoch"]) for r in progress_rows(out)] == list(range(8))


def test_resume_with_no_intact_checkpoint_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main([*RUN, "--steps", "400", "--out", str(out)]) == 0
    folders = sorted((out / "checkpoints").glob("ckpt-*"))
    truncate(folders[0] / "agent.keras")
    for folder in folders[1:]:
        (folder / "state.json").write_text("{not json")
    capsys.readouterr()
    with pytest.raises(SystemExit) as error:
        cli.main([*RUN, "--resume", "--out", str(out)])
    assert error.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "No intact checkpoint" in err
    assert str(folders[0] / "agent.keras") in err and str(folders[-1] / "state.json") in err
    assert sorted((out / "checkpoints").glob("ckpt-*")) == folders  # nothing moved, nothing deleted


def test_python_resume_warns_about_the_damaged_checkpoint(tmp_path):
    env = gym.make("Pendulum-v1")
    agent = make_sac(env)
    agent.fit(make_data(env, agent, learning_starts=20, batch_size=8), epochs=1, steps_per_epoch=30, verbose=0,
              callbacks=[rlcb.Checkpoint(tmp_path, every_steps=20)])
    folders = sorted(tmp_path.glob("ckpt-*"))
    truncate(folders[-1] / "agent.keras")
    with pytest.warns(UserWarning, match="agent.keras is damaged"):
        _, data = rlcb.resume(tmp_path, gym.make("Pendulum-v1"))
    assert data.checkpoint == str(folders[-2])


# ------------------------------------------------------------------ start-up noise
def test_cli_output_has_no_tensorflow_startup_lines(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "kerasrl", "eval", str(tmp_path / "missing.keras"), "Pendulum-v1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"kerasrl eval: error: no such file: {tmp_path / 'missing.keras'}"]


def test_startup_filter_keeps_other_lines():
    from kerasrl import _quiet

    text = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            "I0000 00:00:1.0 1 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.\n"
            "E0000 00:00:1.0 1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: UNKNOWN ERROR (303)\n"
            "E0000 00:00:1.0 1 some_kernel.cc:7] Out of memory while allocating\n")
    assert _quiet.without_startup_notices(text) == "E0000 00:00:1.0 1 some_kernel.cc:7] Out of memory while allocating\n"


# ------------------------------------------------------------------ long runs
@pytest.mark.parametrize("update_freq", ["epoch", 100])
def test_tensorboard_callback_memory_stays_flat(tmp_path, update_freq):
    """Keras' own TensorBoard leaves every logged number in TensorFlow's scalar cache.

    The cache holds the Python numbers themselves, so tracemalloc sees them
    (~0.3 MiB of floats and ints here with Keras' callback; RSS grows ~10 MiB).
    """
    board = rlcb.TensorBoard(str(tmp_path / "tb"), update_freq=update_freq)
    board.set_model(make_sac(gym.make("CartPole-v1")))
    board.on_train_begin()
    offset = 0.5 if update_freq == "epoch" else 0.25  # values no earlier case left in the cache
    tracemalloc.start()
    try:
        for batch in range(5_000):  # batch ends with new values every time, as in a long run
            if batch == 1_000:  # after the first writes' one-off allocations
                before = tracemalloc.get_traced_memory()[0]
            board.on_train_batch_end(batch, {"loss": offset + batch * 1e-3, "q_mean": offset + batch * 0.37,
                                             "env_steps": offset + 10 * batch, "episode_return": offset + batch / 7})
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 100_000, f"{grown} bytes more"
    board.on_epoch_end(2, {"loss": 0.5, "episode_return": 12.0})
    board.on_train_end()
    events = list((tmp_path / "tb" / "train").glob("events.out.tfevents*"))
    assert events and sum(e.stat().st_size for e in events) > 0


# ------------------------------------------------------------------ discrete SAC's defaults
@pytest.mark.parametrize("env_id, n", [("CartPole-v1", 2), ("Acrobot-v1", 3), ("LunarLander-v3", 4)])
def test_discrete_sac_default_target_entropy(env_id, n):
    """0.6 log|A|: the seed's 0.98 log|A| kept Acrobot at the random return and let CartPole's alpha diverge."""
    agent = kerasrl.SAC.from_env(gym.make(env_id), hidden=(8,))
    assert agent.target_entropy == pytest.approx(0.6 * math.log(n))
    seed_setting = kerasrl.SAC.from_env(gym.make(env_id), hidden=(8,), target_entropy=0.98 * math.log(n))
    assert seed_setting.target_entropy == pytest.approx(0.98 * math.log(n))
    again = kerasrl.SAC.from_config(seed_setting.get_config())
    assert again.target_entropy == pytest.approx(0.98 * math.log(n))
    tuned = SACHyperModel(env_id).build(keras_tuner.HyperParameters())
    assert tuned.target_entropy == pytest.approx(0.6 * math.log(n))
