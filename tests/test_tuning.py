"""kerasrl.tuning: keras-tuner searches over agents with tiny budgets (real envs, real keras-tuner)."""

from __future__ import annotations

import json
import os

import gymnasium as gym
import keras
import keras_tuner
import numpy as np
import pytest

import kerasrl
from kerasrl import cli, tuning

OBJECTIVE = keras_tuner.Objective("eval_return", "max")
BUDGET = 400  # env steps per trial: 100 random warm-up steps, then 300 updates


def tiny(**fixed) -> keras_tuner.HyperParameters:
    """Tiny networks, one update per env step (and any other fixed values): trials of a second or two."""
    hp = keras_tuner.HyperParameters()
    for name, value in {"width": 16, "depth": 1, "batch_size": 64, "train_freq": 1, "gradient_steps": 1,
                        **fixed}.items():
        hp.Fixed(name, value)
    return hp


def random_oracle(max_trials: int, seed: int = 1, **fixed) -> keras_tuner.oracles.RandomSearchOracle:
    return keras_tuner.oracles.RandomSearchOracle(objective=OBJECTIVE, max_trials=max_trials, seed=seed,
                                                  hyperparameters=tiny(**fixed))


def sac_tuner(path, oracle, **kwargs) -> tuning.RLTuner:
    return tuning.RLTuner(tuning.SACHyperModel("Pendulum-v1", learning_starts=100), oracle,
                          directory=str(path), project_name="sac", **kwargs)


class RecordFitStart(keras.callbacks.Callback):
    """Appends the env steps at which every fit of a trial begins to a file (deep copies share it)."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def on_train_begin(self, logs=None):
        with open(self.path, "a") as f:
            f.write(f"{self.model.env_dataset.env_steps}\n")


class RecordFitState(keras.callbacks.Callback):
    """Appends a JSON line with what a fit starts and ends with: counters, optimizer steps,
    replay size and a digest of the weights (deep copies share the file)."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def _write(self, event: str) -> None:
        agent, data = self.model, self.model.env_dataset
        state = {"event": event, "env_steps": data.env_steps, "buffer": len(data.buffer),
                 "gradient_steps": int(agent.num_gradient_steps.numpy()),
                 "optimizer_steps": [int(getattr(agent, f"{role}_optimizer").iterations.numpy())
                                     for role in sorted(agent.optimizer_roles())],
                 "weights": float(sum(np.abs(w).sum(dtype=np.float64) for w in agent.get_weights()))}
        with open(self.path, "a") as f:
            f.write(json.dumps(state) + "\n")

    def on_train_begin(self, logs=None):
        self._write("begin")

    def on_train_end(self, logs=None):
        self._write("end")


class InterruptOnce(keras.callbacks.Callback):
    """Stops the search like Ctrl-C once the collector passes `env_steps` (a marker file remembers)."""

    def __init__(self, marker: str, env_steps: int):
        super().__init__()
        self.marker, self.env_steps = marker, env_steps

    def on_train_batch_end(self, batch, logs=None):
        if self.model.env_dataset.env_steps >= self.env_steps and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            raise KeyboardInterrupt


def test_user_story_bayesian_search_and_its_best_model(tmp_path, pendulum):
    oracle = keras_tuner.oracles.BayesianOptimizationOracle(objective=OBJECTIVE, max_trials=2, seed=1,
                                                            hyperparameters=tiny())
    tuner = sac_tuner(tmp_path, oracle)
    tuner.search(env_steps=BUDGET, eval_episodes=2, verbose=0)
    trials = tuner.oracle.trials.values()
    assert [t.status for t in trials] == ["COMPLETED", "COMPLETED"]
    best_agent = tuner.get_best_models(1)[0]
    best_hp = tuner.get_best_hyperparameters(1)[0]
    best_trial = tuner.oracle.get_best_trials(1)[0]
    assert isinstance(best_agent, kerasrl.SAC) and best_agent.compiled
    assert best_agent.steps_per_execution == 50  # the hypermodel's, not the single-threaded trial's
    assert best_agent.hidden == (16,) and best_agent.gamma == best_hp.get("gamma")
    assert best_agent.num_env_steps.numpy() == BUDGET
    # The loaded agent is the one the trial scored: its evaluation repeats the score.
    returns = best_agent.evaluate_env(pendulum, episodes=2, seed=tuning.tuner.EVAL_SEED_OFFSET)
    assert np.mean(returns) == pytest.approx(best_trial.score, abs=1e-6)
    action = best_agent.act(pendulum.reset(seed=0)[0])
    assert pendulum.action_space.contains(action)
    tuner.results_summary()  # keras-tuner's report runs on our trials

    agent, data = tuner.resume_trial(best_trial)  # keep training the winner, replay buffer included
    assert data.buffer.size == BUDGET and data.prefetch == 1
    agent.fit(data, epochs=data.initial_epoch + 1, initial_epoch=data.initial_epoch, steps_per_epoch=20, verbose=0)
    assert agent.num_gradient_steps.numpy() == BUDGET - 100 + 20


def test_a_trial_is_reproducible(tmp_path):
    scores = []
    for name in ("a", "b"):
        tuner = sac_tuner(tmp_path / name, random_oracle(1, seed=3))
        tuner.search(env_steps=BUDGET, eval_episodes=1, verbose=0)
        scores.append(tuner.oracle.get_best_trials(1)[0].score)
    assert scores[0] == scores[1]


def test_executions_average_seeds(tmp_path):
    tuner = sac_tuner(tmp_path, random_oracle(1), executions_per_trial=2, seed=5)
    tuner.search(env_steps=BUDGET, eval_episodes=1, verbose=0)
    trial = tuner.oracle.get_best_trials(1)[0]
    runs = [json.loads(open(os.path.join(tuner.get_trial_dir(trial.trial_id), f"execution_{k}", "eval.json")).read())
            for k in (0, 1)]
    assert [r["seed"] for r in runs] == [5, 6]
    assert runs[0]["returns"] != runs[1]["returns"]
    assert trial.score == pytest.approx(np.mean([r["returns"][0] for r in runs]))


def test_resumed_search_keeps_finished_trials_and_continues_the_interrupted_one(tmp_path):
    starts = str(tmp_path / "starts.txt")
    callbacks = [RecordFitStart(starts), InterruptOnce(str(tmp_path / "interrupted"), env_steps=300)]
    tuner = sac_tuner(tmp_path, random_oracle(3), checkpoint_every=100)
    with pytest.raises(KeyboardInterrupt):  # trial 0 reaches 300 env steps and is interrupted
        tuner.search(env_steps=BUDGET, eval_episodes=1, callbacks=callbacks, verbose=0)

    tuner = sac_tuner(tmp_path, random_oracle(3), checkpoint_every=100)  # overwrite=False: reloads
    tuner.search(env_steps=BUDGET, eval_episodes=1, callbacks=callbacks, verbose=0)
    trials = tuner.oracle.trials
    assert sorted(trials) == ["0", "1", "2"]
    assert all(t.status == "COMPLETED" for t in trials.values())
    first = keras.saving.load_model(os.path.join(tuner.get_trial_dir("0"), "agent.keras"))
    assert first.num_env_steps.numpy() == BUDGET
    # Fit starts: trial 0 from scratch, again from its last checkpoint (200 env steps: the interrupt came
    # at 300 before the checkpoint callback), then trials 1 and 2 from scratch.
    assert [int(x) for x in open(starts).read().split()] == [0, 200, 0, 0]
    finished = os.path.getmtime(os.path.join(tuner.get_trial_dir("2"), "agent.keras"))

    tuner = sac_tuner(tmp_path, random_oracle(3))
    assert tuner.remaining_trials == 0
    tuner.search(env_steps=BUDGET, eval_episodes=1, verbose=0)  # nothing left to do
    assert os.path.getmtime(os.path.join(tuner.get_trial_dir("2"), "agent.keras")) == finished
    assert len(open(starts).read().split()) == 4


def test_hyperband_trials_continue_from_their_parent(tmp_path):
    record = str(tmp_path / "fits.jsonl")
    oracle = keras_tuner.oracles.HyperbandOracle(objective=OBJECTIVE, max_epochs=3, factor=3, seed=1,
                                                 hyperparameters=tiny())
    tuner = sac_tuner(tmp_path, oracle)
    tuner.search(env_steps=600, eval_episodes=1, callbacks=[RecordFitState(record)], verbose=0)
    trials = tuner.oracle.trials.values()
    assert all(t.status == "COMPLETED" for t in trials)
    children = [t for t in trials if "tuner/trial_id" in t.hyperparameters.values]
    assert children
    for child in children:
        parent = tuner.oracle.trials[child.hyperparameters.values["tuner/trial_id"]]
        parent_steps = tuner.trial_env_steps(parent.hyperparameters, 600)
        assert parent_steps < 600 and tuner.trial_env_steps(child.hyperparameters, 600) == 600
        agent = tuner.load_model(child)
        # One update per env step after the 100 warm-up steps, over the parent's steps and its own.
        assert agent.num_env_steps.numpy() == 600 and agent.num_gradient_steps.numpy() == 500
        params = {k: v for k, v in child.hyperparameters.values.items() if not k.startswith("tuner/")}
        assert params == {k: v for k, v in parent.hyperparameters.values.items() if not k.startswith("tuner/")}
    # Every child's fit begins with exactly the state a parent's fit ended with:
    # its weights, optimizer steps, replay buffer and counters.
    fits = [json.loads(line) for line in open(record)]
    ends = [{k: v for k, v in f.items() if k != "event"} for f in fits if f["event"] == "end"]
    continued = [f for f in fits if f["event"] == "begin" and f["env_steps"] > 0]
    assert len(continued) == len(children)
    for begin in continued:
        assert {k: v for k, v in begin.items() if k != "event"} in ends
        assert begin["buffer"] == begin["env_steps"] and min(begin["optimizer_steps"]) > 0


@pytest.mark.parametrize("name, env_id", [("sac", "Pendulum-v1"), ("dqn", "CartPole-v1"),
                                          ("td3", "Pendulum-v1"), ("ddpg", "Pendulum-v1"), ("lstm_td3", "Pendulum-v1")])
def test_every_hypermodel_tunes_its_agent(tmp_path, name, env_id):
    hypermodel = tuning.HYPERMODELS[name](env_id, learning_starts=100)
    fixed = {"lstm_units": 16, "history_length": 3} if name == "lstm_td3" else {}
    tuner = tuning.RLTuner(hypermodel, random_oracle(1, gamma=0.95, **fixed), directory=str(tmp_path),
                           project_name=name)
    tuner.search(env_steps=300, eval_episodes=1, verbose=0)
    agent = tuner.get_best_models(1)[0]
    assert isinstance(agent, hypermodel.agent_class)
    assert agent.gamma == 0.95 and agent.hidden == (16,)  # fixed through the oracle's HyperParameters
    env = gym.make(env_id)
    action = agent.act(env.reset(seed=0)[0])
    assert env.action_space.contains(action[0] if agent.stateful else action)
    space = {hp.name for hp in tuner.oracle.get_space().space}
    assert {"learning_rate", "batch_size", "gamma", "width", "depth", "buffer_size", "train_freq",
            "gradient_steps"} <= space
    assert {"sac": {"tau", "target_entropy"}, "dqn": {"exploration_fraction", "exploration_final_eps"},
            "td3": {"tau", "noise_type", "noise_std"}, "ddpg": {"tau", "noise_type", "noise_std"},
            "lstm_td3": {"tau", "noise_type", "noise_std", "history_length", "lstm_units"}}[name] <= space
    if name == "lstm_td3":
        assert agent.history_length == 3 and agent.lstm_units == 16


@pytest.mark.parametrize("name", ["ppo", "a2c"])
def test_on_policy_hypermodels_tune_their_agents_on_rollouts(tmp_path, name):
    hypermodel = tuning.HYPERMODELS[name]("CartPole-v1")
    fixed = {"n_steps": 64, "n_epochs": 2} if name == "ppo" else {"n_steps": 8}
    tuner = tuning.RLTuner(hypermodel, random_oracle(1, gamma=0.95, **fixed), directory=str(tmp_path),
                           project_name=name)
    tuner.search(env_steps=256, eval_episodes=1, verbose=0)
    agent = tuner.get_best_models(1)[0]
    assert isinstance(agent, hypermodel.agent_class) and agent.gamma == 0.95 and agent.hidden == (16,)
    assert agent.n_steps == fixed["n_steps"]
    trial = tuner.oracle.get_best_trials(1)[0]
    with open(os.path.join(tuner.get_trial_dir(trial.trial_id), "execution_0", "eval.json")) as f:
        assert json.load(f)["env_steps"] == 256
    space = {hp.name for hp in tuner.oracle.get_space().space}
    assert {"learning_rate", "gamma", "gae_lambda", "ent_coef", "width", "depth", "activation"} <= space
    assert name == "a2c" or {"batch_size", "n_epochs", "clip_range"} <= space
    optimizer = {"ppo": keras.optimizers.Adam, "a2c": keras.optimizers.RMSprop}[name]
    assert isinstance(agent.network_optimizer, optimizer)


def test_actor_critic_hypermodel_stops_its_whole_episode_trials_at_the_budget(tmp_path):
    hypermodel = tuning.HYPERMODELS["ac"]("CartPole-v1")
    tuner = tuning.RLTuner(hypermodel, random_oracle(1, gamma=0.95, normalize_returns=False),
                           directory=str(tmp_path), project_name="ac")
    tuner.search(env_steps=300, eval_episodes=1, steps_per_epoch=50, verbose=0)
    agent = tuner.get_best_models(1)[0]
    assert isinstance(agent, kerasrl.ActorCritic) and agent.hidden == (16,) and not agent.normalize_returns
    assert isinstance(agent.network_optimizer, keras.optimizers.Adam)
    trial = tuner.oracle.get_best_trials(1)[0]
    with open(os.path.join(tuner.get_trial_dir(trial.trial_id), "execution_0", "eval.json")) as f:
        env_steps = json.load(f)["env_steps"]
    # One update per episode, stopped after the episode that crossed the budget (CartPole's last 500 steps at most).
    assert 300 <= env_steps < 800
    assert int(agent.num_gradient_steps.numpy()) < 300
    space = {hp.name for hp in tuner.oracle.get_space().space}
    assert {"learning_rate", "gamma", "width", "depth", "normalize_returns"} <= space


def test_hypermodels_turn_hyperparameters_into_agents_and_datasets():
    hp = keras_tuner.HyperParameters()
    hp.Fixed("noise_type", "ou")
    hp.Fixed("noise_std", 0.3)
    hp.Fixed("train_freq", 4)
    hp.Fixed("gradient_steps", -1)
    hypermodel = tuning.TD3HyperModel("Pendulum-v1")
    agent = hypermodel.build(hp)
    assert agent.hidden == (400, 400) and agent.compiled  # the defaults: width 400, depth 2
    data = hypermodel.make_dataset(hp, agent, "Pendulum-v1", seed=0, env_steps=1000)
    assert isinstance(data.action_noise, kerasrl.noise.OrnsteinUhlenbeck) and data.action_noise.sigma(0) == 0.3
    assert data.train_freq == 4 and data.gradient_steps == 4  # -1: one update per env step of the round

    hp = keras_tuner.HyperParameters()
    hypermodel = tuning.DQNHyperModel("CartPole-v1")
    data = hypermodel.make_dataset(hp, hypermodel.build(hp), "CartPole-v1", seed=0, env_steps=10_000)
    assert data.exploration(0) == 1.0 and data.exploration(1000) == pytest.approx(0.05)  # fraction 0.1 of 10k


def test_bad_setups_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="eval_return"):
        tuning.RLTuner(tuning.SACHyperModel("Pendulum-v1"), keras_tuner.oracles.RandomSearchOracle(
            objective=keras_tuner.Objective("val_loss", "min"), max_trials=1), directory=str(tmp_path))
    with pytest.raises(ValueError, match="environment id"):
        tuning.RLTuner(keras_tuner.HyperModel(), random_oracle(1), directory=str(tmp_path))

    class NotAnAgent(keras_tuner.HyperModel):
        env_id = "Pendulum-v1"

        def build(self, hp):
            return keras.Sequential([keras.layers.Dense(1)])

    tuner = tuning.RLTuner(NotAnAgent(), random_oracle(1), directory=str(tmp_path), project_name="bad")
    with pytest.raises(keras_tuner.errors.FatalTypeError, match="compiled kerasrl agent"):
        tuner.search(env_steps=200, verbose=0)
    with pytest.raises(ValueError, match="gradient_steps"):
        kerasrl.EnvDataset("Pendulum-v1", kerasrl.SAC.from_env(gym.make("Pendulum-v1")), gradient_steps=0)


def test_cli_tune_writes_the_best_agent(tmp_path, capsys):
    out = tmp_path / "tune"
    args = ["tune", "sac", "Pendulum-v1", "--trials", "2", "--steps", "300", "--out", str(out), "--oracle", "random",
            "--learning-starts", "100", "--eval-episodes", "1", "--verbose", "0",
            "--fixed", "width=16", "depth=1", "gamma=0.95"]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "best_hyperparameters.json").read_text())
    assert result["hyperparameters"]["gamma"] == 0.95 and f"eval_return {result['eval_return']:.2f}" in printed
    agent = keras.saving.load_model(out / "best_agent.keras")
    assert isinstance(agent, kerasrl.SAC) and agent.hidden == (16,)
    assert cli.main(args) == 0  # again: the search is reloaded and has nothing left to run
    assert "Reloading Tuner" in capsys.readouterr().out

    with pytest.raises(SystemExit) as error:
        cli.main(["tune", "sac", "Pendulum-v1", "--out", str(tmp_path / "x"), "--fixed", "widht=16"])
    assert error.value.code == 2 and "no hyperparameter widht" in capsys.readouterr().err
