"""PPO and A2C: the losses on hand-computed batches, target_kl, the .keras round trip, learning on CartPole."""

from __future__ import annotations

import gymnasium as gym
import keras
import numpy as np
import pytest

import kerasrl
from support import HIDDEN, InterruptAt, assert_weights_equal, log_softmax


def numpy_heads(agent, obs):
    out, value = agent._heads(obs)
    return np.asarray(out), np.asarray(value)


def hand_batch(n: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"observation": rng.normal(size=(n, 4)).astype(np.float32), "action": rng.integers(0, 2, n),
            "log_prob": np.log(rng.uniform(0.2, 0.8, n)).astype(np.float32),
            "value": rng.normal(size=n).astype(np.float32), "advantage": rng.normal(size=n).astype(np.float32),
            "value_target": rng.normal(size=n).astype(np.float32),
            "explained_variance": np.full(n, 0.5, np.float32), "rollout": np.zeros(n, np.float32),
            "env_steps": np.int64(0)}


def tensors(batch):
    return {k: keras.ops.convert_to_tensor(v) for k, v in batch.items()}


@pytest.mark.parametrize("clip_range_vf", [None, 0.1])
def test_ppo_loss_is_the_clipped_surrogate(clip_range_vf):
    env = gym.make("CartPole-v1")
    agent = kerasrl.PPO.from_env(env, hidden=HIDDEN, seed=0, clip_range=0.2, clip_range_vf=clip_range_vf,
                                 ent_coef=0.01, vf_coef=0.5)
    agent.compile(optimizer=keras.optimizers.SGD(0.0))
    batch = hand_batch()
    out, value = numpy_heads(agent, batch["observation"])
    log_pi = log_softmax(out)
    log_prob = log_pi[np.arange(16), batch["action"]]
    ratio = np.exp(log_prob - batch["log_prob"])
    adv = (batch["advantage"] - batch["advantage"].mean()) / (batch["advantage"].std() + 1e-8)
    policy = -np.mean(np.minimum(ratio * adv, np.clip(ratio, 0.8, 1.2) * adv))
    if clip_range_vf is not None:
        value = batch["value"] + np.clip(value - batch["value"], -clip_range_vf, clip_range_vf)
    value_loss = np.mean((batch["value_target"] - value) ** 2)
    entropy = np.mean(-np.sum(np.exp(log_pi) * log_pi, -1))
    logs = agent.update(tensors(batch))
    np.testing.assert_allclose(float(logs["policy_loss"]), policy, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(logs["value_loss"]), value_loss, rtol=1e-4)
    np.testing.assert_allclose(float(logs["loss"]), policy - 0.01 * entropy + 0.5 * value_loss, rtol=1e-4)
    np.testing.assert_allclose(float(logs["clip_fraction"]), np.mean(np.abs(ratio - 1) > 0.2), atol=1e-6)


def test_a2c_loss_is_the_policy_gradient_with_a_value_baseline():
    env = gym.make("CartPole-v1")
    agent = kerasrl.A2C.from_env(env, hidden=HIDDEN, seed=0, ent_coef=0.01)
    agent.compile(optimizer=keras.optimizers.SGD(0.0))
    batch = hand_batch()
    out, value = numpy_heads(agent, batch["observation"])
    log_pi = log_softmax(out)
    policy = -np.mean(batch["advantage"] * log_pi[np.arange(16), batch["action"]])  # not normalised (SB3's A2C)
    value_loss = np.mean((batch["value_target"] - value) ** 2)
    entropy = np.mean(-np.sum(np.exp(log_pi) * log_pi, -1))
    logs = agent.update(tensors(batch))
    np.testing.assert_allclose(float(logs["policy_loss"]), policy, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(logs["value_loss"]), value_loss, rtol=1e-4)
    np.testing.assert_allclose(float(logs["entropy"]), entropy, rtol=1e-4)
    # the entropy is a bonus: it lowers the loss (SB3's vf_coef 0.5)
    np.testing.assert_allclose(float(logs["loss"]), policy - 0.01 * entropy + 0.5 * value_loss, rtol=1e-4)


@pytest.mark.parametrize("cls", [kerasrl.PPO, kerasrl.A2C])
def test_gaussian_log_prob_and_entropy_are_the_normal_densitys(cls):
    agent = cls.from_env(gym.make("Pendulum-v1"), hidden=HIDDEN, seed=0, log_std_init=-0.7)
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(8, 1)).astype(np.float32)
    action = rng.normal(size=(8, 1)).astype(np.float32)
    sigma = np.exp(-0.7)
    log_prob, entropy = agent.log_prob_and_entropy(keras.ops.convert_to_tensor(mean), action)
    density = np.exp(-((action - mean) ** 2) / (2 * sigma ** 2)) / (sigma * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(np.asarray(log_prob), np.log(density[:, 0]), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(entropy), np.full(8, 0.5 * np.log(2 * np.pi * np.e * sigma ** 2)),
                               rtol=1e-5)


@pytest.mark.parametrize("cls", [kerasrl.PPO, kerasrl.A2C])
def test_the_gradient_is_clipped_to_max_grad_norm(cls):
    agent = cls.from_env(gym.make("CartPole-v1"), hidden=HIDDEN, seed=0, max_grad_norm=1e-3)
    agent.compile(optimizer=keras.optimizers.SGD(1.0))  # a step of SGD(1) is minus the gradient
    before = [w.numpy().copy() for w in agent.trainable_variables]
    agent.update(tensors(hand_batch()))
    step = [w.numpy() - b for w, b in zip(agent.trainable_variables, before)]
    np.testing.assert_allclose(np.sqrt(sum(np.sum(d ** 2) for d in step)), 1e-3, rtol=1e-3)


@pytest.mark.parametrize("factor, steps", [(1.4, 1), (1.6, 0)])
def test_target_kl_stops_past_one_and_a_half_times_the_limit(factor, steps):
    """SB3's rule: a minibatch whose approx_kl exceeds 1.5 target_kl makes no step (nor does the rest of its rollout)."""
    batch = hand_batch()
    probe = kerasrl.PPO.from_env(gym.make("CartPole-v1"), hidden=HIDDEN, seed=0)
    log_pi = log_softmax(numpy_heads(probe, batch["observation"])[0])
    log_ratio = log_pi[np.arange(16), batch["action"]] - batch["log_prob"]
    approx_kl = np.mean(np.exp(log_ratio) - 1.0 - log_ratio)
    agent = kerasrl.PPO.from_env(gym.make("CartPole-v1"), hidden=HIDDEN, seed=0, target_kl=approx_kl / factor)
    agent.compile(optimizer=keras.optimizers.SGD(1e-3))
    logs = agent.update(tensors(batch))
    np.testing.assert_allclose(float(logs["approx_kl"]), approx_kl, rtol=1e-4)
    assert int(agent.network_optimizer.iterations.numpy()) == steps


def test_a2c_default_rmsprop_steps_as_stable_baselines3s_torch_rmsprop():
    """torch: lr g / (sqrt(v) + 1e-5); Keras divides by sqrt(v + epsilon): same steps, small gradients included."""
    optimizer = kerasrl.A2C.from_env(gym.make("CartPole-v1"), hidden=HIDDEN).default_optimizer()
    grads = np.array([1e-5, 1e-4, 1e-3, 1e-2, 1.0], np.float32)
    variable = keras.Variable(np.zeros_like(grads))
    optimizer.apply_gradients([(keras.ops.convert_to_tensor(grads), variable)])
    torch_step = 7e-4 * grads / (np.sqrt(0.01 * grads ** 2) + 1e-5)  # the first step, from v = 0
    np.testing.assert_allclose(-variable.numpy(), torch_step, rtol=0.5)


def test_each_rollout_starts_from_the_policy_that_collected_it_and_target_kl_stops_its_steps():
    env = gym.make_vec("CartPole-v1", num_envs=2)
    agent = kerasrl.PPO.from_env(env, hidden=HIDDEN, seed=0, n_steps=32, batch_size=16, n_epochs=3,
                                 target_kl=1e-6)
    agent.compile(optimizer=keras.optimizers.Adam(1e-2), steps_per_execution=1)
    first_of_rollout = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch % 12 == 0:
                first_of_rollout.append((logs["approx_kl"], logs["clip_fraction"]))

    agent.fit(kerasrl.RolloutDataset(env, agent, seed=0), epochs=3, callbacks=[Record()], verbose=0)
    # The first minibatch of every rollout sees ratio 1: the rollout was collected with these weights.
    np.testing.assert_allclose(first_of_rollout, 0.0, atol=1e-6)
    # 12 minibatches per rollout (4 per pass, 3 passes); past the KL limit only the first made a step.
    assert int(agent.num_gradient_steps.numpy()) == 36
    assert int(agent.network_optimizer.iterations.numpy()) == 3


@pytest.mark.parametrize("cls", [kerasrl.PPO, kerasrl.A2C])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_round_trip_through_a_keras_file(cls, env_id, tmp_path):
    env = gym.make(env_id)
    extra = {"clip_range": kerasrl.schedules.Linear(0.3, 0.1, 1000), "shared_network": True} if cls is kerasrl.PPO else {}
    agent = cls.from_env(env, hidden=HIDDEN, seed=0, n_steps=16, **extra)
    if cls is kerasrl.PPO:
        extra_data = {"batch_size": 8, "n_epochs": 2}
    else:
        extra_data = {}
    agent.compile(optimizer=keras.optimizers.Adam(1e-3))
    agent.fit(kerasrl.RolloutDataset(env, agent, seed=0, **extra_data), epochs=2, verbose=0)
    agent.save(tmp_path / "agent.keras")
    again = keras.saving.load_model(tmp_path / "agent.keras")
    assert type(again) is cls and again.get_config() == agent.get_config()
    assert_weights_equal(again.get_weights(), agent.get_weights())
    assert int(again.network_optimizer.iterations.numpy()) == int(agent.network_optimizer.iterations.numpy()) > 0
    obs = np.stack([env.observation_space.sample() for _ in range(10)])
    np.testing.assert_array_equal(again.act(obs, deterministic=True), agent.act(obs, deterministic=True))


def test_ppo_learns_cartpole():
    env = gym.make_vec("CartPole-v1", num_envs=4)
    agent = kerasrl.PPO.from_env(env, seed=0, n_steps=128, batch_size=64, n_epochs=4)
    agent.compile(optimizer=keras.optimizers.Adam(1e-3))
    agent.fit(kerasrl.RolloutDataset(env, agent, seed=0), epochs=20, verbose=0)  # 10,240 env steps
    returns = agent.evaluate_env(gym.make("CartPole-v1"), episodes=5, seed=1)
    assert returns.mean() >= PPO_CARTPOLE_THRESHOLD, returns


PPO_CARTPOLE_THRESHOLD = 150.0


class RecordObservations(gym.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.seen = []

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.seen.append(obs)
        return obs, info

    def step(self, action):
        obs, *rest = self.env.step(action)
        self.seen.append(obs)
        return (obs, *rest)


def test_observation_normalisation_moves_once_per_rollout_and_the_rollout_keeps_what_the_policy_saw():
    env = RecordObservations(gym.make("Pendulum-v1"))  # 200-step episodes: no reset in two rollouts of 100
    agent = kerasrl.PPO.from_env(env, hidden=HIDDEN, seed=0, n_steps=100, normalize_observations=True)
    agent.compile()
    data = kerasrl.RolloutDataset(env, agent, seed=0)
    first = data.collect()
    raw1 = np.asarray(env.seen[:100])
    np.testing.assert_allclose(first["observation"][:, 0], raw1, rtol=1e-6)  # statistics start at 0 and 1
    np.testing.assert_allclose(agent.observation_mean.numpy(), raw1.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(agent.observation_var.numpy(), raw1.var(0), rtol=1e-3, atol=1e-6)
    mean, std = agent.observation_mean.numpy(), np.sqrt(agent.observation_var.numpy() + 1e-8)
    second = data.collect()
    raw2 = np.asarray(env.seen[100:200])
    # The second rollout was seen, and is learnt from, through the first one's statistics.
    np.testing.assert_allclose(second["observation"][:, 0], np.clip((raw2 - mean) / std, -10, 10),
                               rtol=1e-4, atol=1e-4)
    both = np.concatenate([raw1, raw2])
    np.testing.assert_allclose(agent.observation_mean.numpy(), both.mean(0), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(agent.observation_var.numpy(), both.var(0), rtol=1e-3, atol=1e-5)
    # act and the exported graph normalise with the statistics as they are now.
    obs = both[:10]
    x = np.clip((obs - agent.observation_mean.numpy()) / np.sqrt(agent.observation_var.numpy() + 1e-8), -10, 10)
    want = np.clip(np.asarray(agent._heads(x)[0]), -1, 1) * 2.0
    np.testing.assert_allclose(agent.act(obs, deterministic=True), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(agent.policy_action(obs)), want, rtol=1e-5, atol=1e-5)


def test_normalised_observations_are_clipped_in_acting_and_in_the_graph():
    env = gym.make("Pendulum-v1")
    agent = kerasrl.PPO.from_env(env, hidden=HIDDEN, seed=0, n_steps=100, normalize_observations=True,
                                 clip_observations=0.5)
    agent.compile()
    kerasrl.RolloutDataset(env, agent, seed=0).collect()
    obs = np.array([[1.0, 0.0, 8.0], [-1.0, 1.0, -8.0], [0.0, -1.0, 0.0]], np.float32)
    x = (obs - agent.observation_mean.numpy()) / np.sqrt(agent.observation_var.numpy() + 1e-8)
    assert np.abs(x).max() > 0.5
    want = np.clip(np.asarray(agent._heads(np.clip(x, -0.5, 0.5))[0]), -1, 1) * 2.0
    np.testing.assert_allclose(agent.act(obs, deterministic=True), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(agent.policy_action(obs)), want, rtol=1e-5, atol=1e-5)


def test_explained_variance_of_a_rollout():
    env = gym.make_vec("CartPole-v1", num_envs=2)
    agent = kerasrl.A2C.from_env(env, hidden=HIDDEN, seed=0, n_steps=20)
    rollout = kerasrl.RolloutDataset(env, agent, seed=0).collect()
    valid = rollout["valid"]
    target, value = rollout["value_target"][valid], rollout["value"][valid]
    want = 1.0 - np.mean((target - value - np.mean(target - value)) ** 2) / np.mean((target - target.mean()) ** 2)
    assert want < 0.9  # an untrained value function
    np.testing.assert_allclose(rollout["explained_variance"], want, rtol=1e-4)


def test_reward_normalisation_divides_by_the_running_return_deviation(tmp_path):
    env = gym.wrappers.TimeLimit(gym.make("CartPole-v1").unwrapped, max_episode_steps=500)
    agent = kerasrl.PPO.from_env(env, hidden=HIDDEN, seed=0, n_steps=64, gamma=0.9, normalize_rewards=True,
                                 clip_rewards=5.0)
    agent.compile()
    data = kerasrl.RolloutDataset(env, agent, seed=0)
    rollout = data.collect()
    done = (rollout["terminated"] | rollout["truncated"])[:, 0]
    running, returns = 0.0, []
    for t in range(64):  # CartPole's reward is 1 every step
        running = 0.9 * running + 1.0
        returns.append(running)
        running = 0.0 if done[t] else running
    np.testing.assert_allclose(agent.return_var.numpy(), np.var(returns), rtol=1e-3)
    np.testing.assert_allclose(rollout["reward"][:, 0], np.minimum(1 / np.sqrt(np.var(returns) + 1e-8), 5.0),
                               rtol=1e-4)
    agent.fit(data, epochs=1, verbose=0)
    agent.save(tmp_path / "ppo.keras")
    again = keras.saving.load_model(tmp_path / "ppo.keras")
    for name in ("observation_mean", "observation_var", "return_var", "return_count"):
        np.testing.assert_array_equal(getattr(again, name).numpy(), getattr(agent, name).numpy())
    assert again.normalize_rewards and not again.normalize_observations


def small_ppo(env, seed=0):
    agent = kerasrl.PPO.from_env(env, hidden=HIDDEN, seed=seed, n_steps=32, batch_size=16, n_epochs=2)
    agent.compile()
    return agent


def test_keras_callbacks_on_rollouts(tmp_path):
    import glob
    import tensorflow as tf

    env = gym.make("CartPole-v1")
    agent = small_ppo(env)
    stop = keras.callbacks.EarlyStopping(monitor="eval_return", mode="max", patience=0, min_delta=1e9)
    callbacks = [kerasrl.callbacks.EvalCallback(gym.make("CartPole-v1"), episodes=1, seed=0), stop,
                 keras.callbacks.TensorBoard(log_dir=str(tmp_path / "tb")),
                 keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
                 keras.callbacks.ModelCheckpoint(str(tmp_path / "ppo-{epoch:02d}.keras"))]
    history = agent.fit(kerasrl.RolloutDataset(env, agent, seed=0), epochs=10, callbacks=callbacks, verbose=0)
    assert history.epoch == [0, 1] and stop.stopped_epoch == 1  # one rollout per epoch, 4 train steps each
    assert int(agent.num_gradient_steps.numpy()) == 8 and "eval_return" in history.history
    last = keras.saving.load_model(tmp_path / "ppo-02.keras")
    assert int(last.num_gradient_steps.numpy()) == 8 and last.compiled
    tags = set()
    for path in glob.glob(str(tmp_path / "tb" / "train" / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    assert {"epoch_approx_kl", "epoch_clip_fraction", "epoch_explained_variance", "epoch_policy_loss"} <= tags
    assert "episode_return" in (tmp_path / "log.csv").read_text().splitlines()[0]


def test_backup_and_restore_resumes_a_rollout_run(tmp_path):
    backup = str(tmp_path / "backup")
    env = gym.make("CartPole-v1")
    agent = small_ppo(env)
    with pytest.raises(KeyboardInterrupt):
        agent.fit(kerasrl.RolloutDataset(env, agent, seed=0), epochs=4, verbose=0,
                  callbacks=[keras.callbacks.BackupAndRestore(backup), InterruptAt(2)])
    fresh = small_ppo(gym.make("CartPole-v1"), seed=7)
    history = fresh.fit(kerasrl.RolloutDataset(gym.make("CartPole-v1"), fresh, seed=0), epochs=4, verbose=0,
                        callbacks=[keras.callbacks.BackupAndRestore(backup)])
    assert history.epoch == [2, 3]
    assert int(fresh.num_gradient_steps.numpy()) == 16 and int(fresh.network_optimizer.iterations.numpy()) == 16
