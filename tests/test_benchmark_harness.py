"""The benchmark harness's pure functions (benchmarks/run.py): ratios, ceilings, settings.

The harness's figures go into the README's table, so its arithmetic is tested
like the library's; the runs themselves are benchmarks, not tests.
"""

import argparse
import json
import importlib.util
import pathlib
import re
import sys

import pytest

_RUN = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
_spec = importlib.util.spec_from_file_location("benchmark_run", _RUN)
harness = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = harness  # dataclasses look their module up
_spec.loader.exec_module(harness)


def _benchmark_module(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", _RUN.parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_median_odd_even_and_missing_values():
    assert harness.median([3.0, 1.0, 2.0]) == 2.0
    assert harness.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert harness.median([None, 5.0]) == 5.0
    assert harness.median([]) is None


def test_ratio_is_of_medians_with_the_per_seed_range():
    # One slow stretch for the peer on seed 1 moves a mean ratio but not the median.
    kerasrl, peer = [300.0, 310.0, 290.0], [150.0, 100.0, 145.0]
    r = harness.ratio(kerasrl, peer)
    assert r["median"] == pytest.approx(300.0 / 145.0)
    assert r["per_seed"] == pytest.approx([2.0, 3.1, 2.0])
    assert (r["min"], r["max"]) == pytest.approx((2.0, 3.1))
    assert harness.ratio([], peer) is None


def test_merge_ceilings_averages_over_all_repetitions():
    a = {"updates": 100, "repetitions_seconds": [1.0, 2.0], "repetitions_cpu_seconds": [1.5, 2.5],
         "act_microseconds": 100.0}
    b = {"updates": 100, "repetitions_seconds": [1.0], "repetitions_cpu_seconds": [1.4],
         "act_microseconds": 200.0}
    merged = harness.merge_ceilings([a, b])
    assert merged["updates_per_second"] == pytest.approx(300 / 4.0)  # not the mean of rates
    assert merged["best_updates_per_second"] == pytest.approx(100.0)
    assert merged["repetitions_seconds"] == [1.0, 2.0, 1.0]
    assert merged["repetitions_cpu_seconds"] == [1.5, 2.5, 1.4]
    assert merged["act_microseconds"] == pytest.approx(150.0)


def test_parse_assignments_reads_json_else_strings():
    parsed = harness.parse_assignments(["learning_rate=1e-3", "net_arch=[64,64]", "dtype=mixed_bfloat16",
                                        "n_steps=episode"], "--set")
    assert parsed == {"learning_rate": 1e-3, "net_arch": [64, 64], "dtype": "mixed_bfloat16",
                      "n_steps": "episode"}
    with pytest.raises(SystemExit, match="--set takes KEY=VALUE"):
        harness.parse_assignments(["learning_rate"], "--set")


def test_settings_layer_defaults_env_tuning_and_overrides():
    dqn = harness.ALGOS["dqn"]
    s = dqn.settings("LunarLander-v3", 1000, {"batch_size": 7})
    assert s["learning_rate"] == 6.3e-4  # rl-zoo's LunarLander row over the DQN defaults
    assert s["batch_size"] == 7  # --set wins
    assert s["steps"] == 1000
    assert dqn.settings("Acrobot-v1", 10)["learning_rate"] == harness.DQN_DEFAULTS["learning_rate"]


def test_summary_reports_medians_ranges_and_a_ratio_per_peer():
    records = [
        {"lib": "kerasrl", "seed": 0, "steps_per_second": 300.0, "updates_per_second": 300.0, "eval_mean": -150.0},
        {"lib": "sb3", "seed": 0, "steps_per_second": 100.0, "eval_mean": -160.0},
        {"lib": "sbx", "seed": 0, "steps_per_second": 200.0, "eval_mean": -155.0},
        {"lib": "kerasrl", "seed": 1, "steps_per_second": 360.0, "updates_per_second": 360.0, "eval_mean": -170.0},
        {"lib": "sb3", "seed": 1, "steps_per_second": 120.0, "eval_mean": -140.0},
        {"lib": "sbx", "seed": 1, "steps_per_second": 240.0, "eval_mean": -145.0},
    ]
    ceiling = {"updates_per_second": 400.0, "best_updates_per_second": 450.0}
    args = argparse.Namespace(algo="sac", env="Pendulum-v1", steps=20000)
    s = harness.summary(records, ceiling, args)
    assert s["kerasrl"]["steps_per_second"] == 330.0
    assert s["kerasrl"]["steps_per_second_range"] == [300.0, 360.0]
    assert s["sb3"]["eval_mean"] == -150.0
    assert s["ratio_vs_sb3"]["median"] == pytest.approx(3.0)
    assert s["ratio_vs_sbx"]["median"] == pytest.approx(1.5)
    assert s["fraction_of_ceiling"] == pytest.approx(330.0 / 400.0)


def test_compare_checks_the_flags_before_running_anything():
    with pytest.raises(SystemExit):
        harness.parse_args(["--compare", "torchrl"])
    assert harness.parse_args(["--compare", "sb3", "sbx"]).compare == ["sb3", "sbx"]
    with pytest.raises(SystemExit):  # no peer has LSTM-TD3: its runs and ceiling are kerasrl's alone
        harness.parse_args(["--algo", "lstm_td3", "--compare", "sb3"])
    assert harness.parse_args(["--algo", "lstm_td3"]).algo == "lstm_td3"


def test_table_row_prints_every_figure_from_the_summary_line(tmp_path):
    table = _benchmark_module("table")
    records = [
        {"lib": "kerasrl", "seed": 0, "steps_per_second": 300.0, "updates_per_second": 300.0, "eval_mean": -150.0},
        {"lib": "sbx", "seed": 0, "steps_per_second": 200.0, "eval_mean": -155.0},
    ]
    args = argparse.Namespace(algo="sac", env="Pendulum-v1", steps=20000)
    summary = harness.summary(records, {"updates_per_second": 400.0, "best_updates_per_second": 450.0}, args)
    raw = tmp_path / "sac_pendulum_peers.jsonl"
    raw.write_text(json.dumps(records[0]) + "\n" + json.dumps(summary) + "\n")
    row = table.row(raw, None, "benchmarks/results/")
    assert row == ("| SAC Pendulum-v1 | 20k | 0 | 300.0 | — | 200.0 | — | **1.50x** | 0.75 | — | −150, −155 "
                   "| [sac_pendulum_peers.jsonl](benchmarks/results/sac_pendulum_peers.jsonl) |")  # one seed: no ranges
    here, elsewhere = {"cpu_model": table.cpu_model(summary)}, {"cpu_model": "another CPU"}
    limits_file = tmp_path / "arithmetic_limit.jsonl"
    limits_file.write_text("\n".join(json.dumps({"kind": "arithmetic_limit", "algo": "sac", "env": "Pendulum-v1",
                                                  "limit_updates_per_second": rate, "machine": machine})
                                      for rate, machine in ((500.0, here), (600.0, here), (300.0, elsewhere))))
    limits = table.limits_by_task(limits_file)
    # the last line measured on the run's CPU
    assert "| 0.75 | 0.50 | −150, −155 |" in table.row(raw, None, "benchmarks/results/", limits)
    limits_file.write_text(json.dumps({"kind": "arithmetic_limit", "algo": "sac", "env": "Pendulum-v1",
                                       "limit_updates_per_second": 300.0, "machine": elsewhere}))
    assert "| 0.75 | — | −150, −155 |" in table.row(raw, None, "benchmarks/results/", table.limits_by_task(limits_file))


def test_every_readme_benchmark_row_is_what_table_py_prints_from_its_raw_file():
    """A figure typed by hand into the README's tables, or a raw file changed under it, fails here."""
    table = _benchmark_module("table")
    root = _RUN.parents[1]
    limits = table.limits_by_task(root / "benchmarks" / "results" / "arithmetic_limit.jsonl")
    row_pattern = re.compile(r"^\| (?P<label>[^|]+?) \| \d+k \|.*\]\((?P<link>benchmarks/results/[^)]+\.jsonl)\) \|$")
    rows = [m for m in map(row_pattern.match, (root / "README.md").read_text().splitlines()) if m]
    assert len(rows) >= 8  # the off-policy and the on-policy tables
    for m in rows:
        assert m.group(0) == table.row(root / m.group("link"), m.group("label"), "benchmarks/results/", limits)


def test_examples_reads_every_evaluation_line_and_checks_each_stated_return():
    examples = _benchmark_module("examples")
    printed = ("TD3 on HalfCheetahBulletEnv-v0: deterministic evaluation 2400.5 ± 3.0\n"
               "DDPG on Pendulum-v1: deterministic evaluation -150.0 ± 2.0\n")
    assert examples.evaluations(printed) == {"TD3 on HalfCheetahBulletEnv-v0": 2400.5, "DDPG on Pendulum-v1": -150.0}
    assert examples.evaluations("best: 1.0 ± 2.0\nafter more training, deterministic evaluation: -140.5 ± 9.0") \
        == {"after more training": -140.5}
    assert examples.evaluations("deterministic evaluation: 500.0 ± 0.0 (min 500)") == {"": 500.0}
    assert examples.reached({"example": "dqn_cartpole", "eval_means": {"": 475.0}})
    assert not examples.reached({"example": "dqn_cartpole", "eval_means": {"": 474.9}})
    assert not examples.reached({"example": "tune_sac", "eval_means": {"": -100.0}})  # the stated line is missing
    assert not examples.reached({"example": "sac_pendulum", "status": "failed"})


def test_on_policy_harness_runs_kerasrl_and_writes_a_curve(tmp_path, capsys):
    on_policy = _benchmark_module("on_policy")
    out = tmp_path / "raw.jsonl"
    on_policy.main(["--algo", "ppo", "--env", "CartPole-v1", "--steps", "1024", "--seeds", "0", "--eval-episodes", "1",
                    "--set", "n_steps=64", "batch_size=64", "n_epochs=2", "--curve-dir", str(tmp_path / "curves"),
                    "--eval-every", "512", "--curve-eval-episodes", "1", "--out", str(out)])
    run, summary = [json.loads(line) for line in out.read_text().splitlines()]
    # 8 copies x 64 steps = 512 env steps a rollout, 2 passes of 8 minibatches each.
    assert run["lib"] == "kerasrl" and run["env_steps"] == 1024 and run["versions"]["updates"] == 32
    assert summary["kind"] == "summary" and summary["kerasrl"]["steps_per_second"] == run["steps_per_second"]
    on_policy.main(["--algo", "ppo", "--env", "CartPole-v1", "--steps", "1024", "--seeds", "0", "--summarize",
                    "--out", str(out)])
    again = json.loads(out.read_text().splitlines()[-1])
    assert again["kerasrl"] == summary["kerasrl"]  # the same run, summarised from the file
    with pytest.raises(SystemExit, match="no run for kerasrl seed 1"):
        on_policy.main(["--algo", "ppo", "--env", "CartPole-v1", "--steps", "1024", "--seeds", "0", "1",
                        "--summarize", "--out", str(out)])
    progress = (tmp_path / "curves" / "kerasrl-ppo-CartPole-v1-seed0" / "progress.csv").read_text().splitlines()
    assert len(progress) == 3 and "eval_return" in progress[0]  # a header and two epochs of one rollout


def test_on_policy_harness_runs_the_actor_critic_to_its_env_step_budget(tmp_path):
    on_policy = _benchmark_module("on_policy")
    out = tmp_path / "raw.jsonl"
    on_policy.main(["--algo", "ac", "--env", "CartPole-v1", "--steps", "300", "--seeds", "1", "--eval-episodes", "1",
                    "--set", "updates_per_epoch=2", "--curve-dir", str(tmp_path / "curves"),
                    "--curve-eval-episodes", "1", "--out", str(out)])
    run = json.loads(out.read_text().splitlines()[0])
    # Whole episodes, one update each, stopped after the episode that crossed the budget.
    assert 300 <= run["env_steps"] < 800 and run["versions"]["updates"] < 300
    assert run["reward_threshold"] == 475.0 and "first_env_steps_at_threshold" in run
    rows = (tmp_path / "curves" / "kerasrl-ac-CartPole-v1-seed1" / "progress.csv").read_text().splitlines()
    assert len(rows) >= 2 and "eval_return" in rows[0]
    with pytest.raises(SystemExit, match="No peer"):
        on_policy.main(["--algo", "ac", "--env", "CartPole-v1", "--compare", "sb3"])
