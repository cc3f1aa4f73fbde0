"""RolloutDataset and the one-network ActorCritic: fresh rollouts, returns, minibatches, the agent contract."""

from __future__ import annotations

import gymnasium as gym
import keras
import numpy as np
import pytest

import kerasrl
from support import HIDDEN, CountingEnv, assert_weights_equal

GAMMA = 0.9


def make_ac(env, steps_per_execution: int = 1, **kwargs) -> kerasrl.ActorCritic:
    agent = kerasrl.ActorCritic.from_env(env, hidden=HIDDEN, gamma=GAMMA, seed=0, **kwargs)
    agent.compile(optimizer=keras.optimizers.Adam(1e-3), steps_per_execution=steps_per_execution)
    return agent


def values_of(agent, observations: np.ndarray) -> np.ndarray:
    return np.asarray(agent._heads(np.asarray(observations, np.float32))[1])


def test_whole_episodes_give_monte_carlo_returns():
    env = CountingEnv(terminate_at=6, discrete=True)  # rewards 1..6, then a termination
    agent = make_ac(env, normalize_returns=False)
    data = kerasrl.RolloutDataset(env, agent, episodes_per_batch=2, seed=0)
    rollout = data.collect()
    t = rollout["observation"][:, 0, 1].astype(int)
    np.testing.assert_array_equal(t, [0, 1, 2, 3, 4, 5] * 2)
    expected = [sum(GAMMA ** (k - s) * (k + 1) for k in range(s, 6)) for s in range(6)] * 2
    np.testing.assert_allclose(rollout["return"][:, 0], expected, rtol=1e-6)
    assert data.episodes == 2 and data.env_steps == 12 and list(data.recent_returns) == [21.0, 21.0]


def test_a_truncation_and_the_rollouts_end_bootstrap_from_the_value_of_the_next_observation():
    env = gym.wrappers.TimeLimit(CountingEnv(discrete=True), max_episode_steps=4)
    agent = make_ac(env, normalize_returns=False)
    data = kerasrl.RolloutDataset(env, agent, n_steps=6, seed=0)
    rollout = data.collect()
    obs, g = rollout["observation"][:, 0], rollout["return"][:, 0]
    np.testing.assert_array_equal(obs[:, 1], [0, 1, 2, 3, 0, 1])
    v_final = values_of(agent, [[obs[3, 0], 4.0]])[0]  # the truncated episode's final observation
    v_next = values_of(agent, [[obs[5, 0], 2.0]])[0]  # the observation after the rollout's last step
    np.testing.assert_allclose(g[3], 4 + GAMMA * v_final, rtol=1e-5)
    np.testing.assert_allclose(g[0], 1 + GAMMA * 2 + GAMMA ** 2 * 3 + GAMMA ** 3 * g[3], rtol=1e-5)
    np.testing.assert_allclose(g[5], 2 + GAMMA * v_next, rtol=1e-5)
    np.testing.assert_allclose(g[4], 1 + GAMMA * g[5], rtol=1e-5)
    # The values recorded while acting are the network's, as it was when the rollout began.
    np.testing.assert_allclose(rollout["value"][:, 0], values_of(agent, obs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("autoreset", ["same_step", "next_step"])
def test_vector_envs_give_only_real_transitions_and_never_mix_episodes(autoreset):
    mode = {"same_step": gym.vector.AutoresetMode.SAME_STEP, "next_step": gym.vector.AutoresetMode.NEXT_STEP}
    env = gym.vector.SyncVectorEnv([lambda tag=tag: CountingEnv(terminate_at=3, discrete=True, tag=tag)
                                    for tag in range(2)], autoreset_mode=mode[autoreset])
    agent = make_ac(env, normalize_returns=False)
    data = kerasrl.RolloutDataset(env, agent, n_steps=8, seed=0)
    (batch,) = data.minibatches(data.collect())
    # 8 steps per copy: SAME_STEP gives episodes 0 and 1 whole and 2 open (t = 0, 1); NEXT_STEP spends
    # steps 3 and 7 on resets, which are no transitions, and ends with episode 1 whole.
    assert len(batch["observation"]) == (16 if autoreset == "same_step" else 12)
    assert data.env_steps == len(batch["observation"])
    for (episode, t), g in zip(batch["observation"], batch["return"]):
        if episode % 100 < 2:  # a whole episode: the Monte-Carlo return of rewards t+1..3
            np.testing.assert_allclose(g, sum(GAMMA ** (k - t) * (k + 1) for k in range(int(t), 3)), rtol=1e-6)
        else:  # still open at the rollout's end: bootstraps from V(t = 2)
            v = values_of(agent, [[episode, 2.0]])[0]
            want = 2 + GAMMA * v if t == 1 else 1 + GAMMA * (2 + GAMMA * v)
            np.testing.assert_allclose(g, want, rtol=1e-5)


def test_minibatches_are_n_epochs_shuffled_passes_and_the_remainder_is_left_out():
    env = gym.wrappers.TimeLimit(CountingEnv(discrete=True), max_episode_steps=1000)
    agent = make_ac(env)
    data = kerasrl.RolloutDataset(env, agent, n_steps=10, batch_size=4, n_epochs=3, seed=0)
    batches = data.minibatches(data.collect())
    assert len(batches) == 3 * 2 and all(len(b["observation"]) == 4 for b in batches)
    passes = [np.concatenate([b["observation"][:, 1] for b in batches[i:i + 2]]) for i in (0, 2, 4)]
    assert all(len(set(p)) == 8 for p in passes) and len({tuple(p) for p in passes}) > 1


def test_fit_collects_each_rollout_after_the_updates_before_it():
    env = gym.make("CartPole-v1")
    agent = make_ac(env)
    data = kerasrl.RolloutDataset(env, agent, episodes_per_batch=1, seed=0)
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append((int(agent.num_gradient_steps.numpy()), data.rollouts)))
    agent.fit(data, epochs=2, steps_per_epoch=5, callbacks=[record], verbose=0)
    # One episode, one update: after k updates exactly k rollouts were collected (none ahead).
    assert seen == [(k, k) for k in range(1, 11)]


def test_many_steps_per_execution_still_collect_after_every_update_and_a_seed_repeats():
    def run() -> tuple[list[np.ndarray], list]:
        env = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
        agent = kerasrl.A2C.from_env(env, hidden=HIDDEN, n_steps=4, seed=0)
        agent.compile(steps_per_execution=50)
        data = kerasrl.RolloutDataset(env, agent, seed=0)
        collect, acted_with = data.collect, []

        def recorded_collect(weights=None):
            live = agent.policy_head.get_weights()
            acted_with.append(np.concatenate([w.ravel() for w in live]))
            rollout = collect(weights)
            snapshot = agent.policy_snapshot()["policy_head"].params[0][:2]  # what the rollout acted with
            for copied, weight in zip(snapshot, live):
                np.testing.assert_array_equal(copied, weight)
            return rollout

        data.collect = recorded_collect
        agent.fit(data, epochs=1, steps_per_epoch=300, verbose=0)
        return acted_with, agent.get_weights()

    # The next minibatch is fetched while a step runs: a rollout started then would act with
    # weights one update old or half written (Keras' own loop did: 74 of 1000 A2C rollouts).
    acted_with, weights = run()
    assert len(acted_with) == 300
    assert all(not np.array_equal(before, after) for before, after in zip(acted_with, acted_with[1:]))
    assert_weights_equal(run()[1], weights)


def test_without_steps_per_epoch_an_epoch_is_one_rollout_with_all_its_passes():
    env = gym.make("CartPole-v1")
    agent = make_ac(env, steps_per_execution=4)
    data = kerasrl.RolloutDataset(env, agent, n_steps=64, batch_size=16, n_epochs=2, seed=0)
    history = agent.fit(data, epochs=3, verbose=0)
    assert int(agent.num_gradient_steps.numpy()) == 3 * 2 * 4 and data.rollouts == 3
    assert data.env_steps == 3 * 64 and len(history.history["loss"]) == 3
    assert np.isfinite(history.history["episode_return"][-1])


def test_an_epoch_runs_exactly_steps_per_epoch_updates_when_calls_do_not_divide_it():
    env = gym.make("CartPole-v1")
    agent = make_ac(env, steps_per_execution=3)
    data = kerasrl.RolloutDataset(env, agent, episodes_per_batch=1, seed=0)
    batches = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: batches.append(int(agent.num_gradient_steps.numpy())))
    history = agent.fit(data, epochs=2, steps_per_epoch=7, callbacks=[record], verbose=0)
    assert int(agent.num_gradient_steps.numpy()) == 14 and data.rollouts == 14
    assert batches == [3, 6, 7, 10, 13, 14] and len(history.history["loss"]) == 2


def test_box_actions_sample_a_gaussian_and_send_the_env_clipped_actions():
    env = gym.make("Pendulum-v1")
    agent = make_ac(env, log_std_init=1.0)
    data = kerasrl.RolloutDataset(env, agent, n_steps=200, seed=0)
    rollout = data.collect()
    raw = rollout["action"][:, 0]
    assert raw.shape == (200, 1) and np.abs(raw).max() > 1.0  # unclipped samples, in [-1, 1] units
    out, _ = agent._heads(rollout["observation"][:, 0])
    log_prob, _ = agent.log_prob_and_entropy(out, raw)
    np.testing.assert_allclose(rollout["log_prob"][:, 0], np.asarray(log_prob), rtol=1e-4, atol=1e-4)
    history = agent.fit(data, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # Each rollout acts with the standard deviation as it is then (the acting snapshot's copy is renewed).
    agent.log_std.assign([0.3])
    rollout = data.collect()
    out, _ = agent._heads(rollout["observation"][:, 0])
    log_prob, _ = agent.log_prob_and_entropy(out, rollout["action"][:, 0])
    np.testing.assert_allclose(rollout["log_prob"][:, 0], np.asarray(log_prob), rtol=1e-4, atol=1e-4)
    action = agent.act(env.reset(seed=0)[0])
    assert env.action_space.contains(action)


def test_deterministic_act_is_the_argmax_of_the_policy_head():
    env = gym.make("CartPole-v1")
    agent = make_ac(env)
    obs = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    logits = np.asarray(agent._heads(obs)[0])
    np.testing.assert_array_equal(agent.act(obs, deterministic=True), logits.argmax(-1))


def test_the_update_is_the_examples_actor_critic_loss():
    env = gym.make("CartPole-v1")
    agent = make_ac(env)
    rng = np.random.default_rng(0)
    batch = {"observation": rng.normal(size=(7, 4)).astype(np.float32), "action": rng.integers(0, 2, 7),
             "return": rng.normal(size=7).astype(np.float32)}
    out, value = (np.asarray(a) for a in agent._heads(batch["observation"]))
    log_pi = out - np.log(np.exp(out).sum(-1, keepdims=True))
    g = (batch["return"] - batch["return"].mean()) / (batch["return"].std() + np.finfo(np.float32).eps)
    actor = -np.sum(log_pi[np.arange(7), batch["action"]] * (g - value))
    error = np.abs(g - value)
    critic = np.sum(np.where(error <= 1, 0.5 * error ** 2, error - 0.5))
    logs = agent.update({k: keras.ops.convert_to_tensor(v) for k, v in batch.items()})
    np.testing.assert_allclose(float(logs["actor_loss"]), actor, rtol=1e-4)
    np.testing.assert_allclose(float(logs["critic_loss"]), critic, rtol=1e-4)


def test_the_actor_loss_sends_no_gradient_into_the_value_head():
    env = gym.make("CartPole-v1")
    agent = make_ac(env)
    agent.compile(optimizer=keras.optimizers.SGD(0.1), steps_per_execution=1)
    rng = np.random.default_rng(1)
    batch = {"observation": rng.normal(size=(9, 4)).astype(np.float32), "action": rng.integers(0, 2, 9),
             "return": rng.normal(size=9).astype(np.float32)}
    features = np.asarray(agent.network.get_layer("torso")(batch["observation"]))
    kernel, bias = agent.network.get_layer("value_head").get_weights()
    value = features @ kernel[:, 0] + bias[0]
    g = (batch["return"] - batch["return"].mean()) / (batch["return"].std() + np.finfo(np.float32).eps)
    d_value = -np.clip(g - value, -1.0, 1.0)  # d Huber(g - V) / dV: only the critic moves V's own head
    agent.update({k: keras.ops.convert_to_tensor(v) for k, v in batch.items()})
    new_kernel, new_bias = agent.network.get_layer("value_head").get_weights()
    np.testing.assert_allclose(new_kernel[:, 0] - kernel[:, 0], -0.1 * features.T @ d_value, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(new_bias - bias, -0.1 * d_value.sum(), rtol=1e-3, atol=1e-6)


def test_save_load_round_trip_keeps_the_policy_and_the_optimizer(tmp_path):
    env = gym.make("CartPole-v1")
    agent = make_ac(env)
    agent.fit(kerasrl.RolloutDataset(env, agent, seed=0), epochs=1, steps_per_epoch=3, verbose=0)
    agent.save(tmp_path / "ac.keras")
    again = keras.saving.load_model(tmp_path / "ac.keras")
    assert isinstance(again, kerasrl.ActorCritic) and again.get_config() == agent.get_config()
    assert_weights_equal(again.get_weights(), agent.get_weights())
    assert int(again.network_optimizer.iterations.numpy()) == 3
    obs = np.random.default_rng(1).normal(size=(20, 4)).astype(np.float32)
    np.testing.assert_array_equal(again.act(obs, deterministic=True), agent.act(obs, deterministic=True))


def test_checkpoint_and_resume_continue_the_rollouts(tmp_path):
    env = gym.make("CartPole-v1")
    agent = make_ac(env)
    data = kerasrl.RolloutDataset(env, agent, n_steps=32, seed=0)
    agent.fit(data, epochs=2, callbacks=[kerasrl.callbacks.Checkpoint(tmp_path, every_steps=32)], verbose=0)
    again, resumed = kerasrl.resume(tmp_path)
    assert isinstance(resumed, kerasrl.RolloutDataset) and resumed.env_steps == 64 and resumed.rollouts == 2
    assert resumed.initial_epoch == 2 and resumed.n_steps == 32
    again.fit(resumed, epochs=3, initial_epoch=resumed.initial_epoch, verbose=0)
    assert resumed.env_steps == 96 and int(again.num_gradient_steps.numpy()) == 3


def test_whole_episodes_in_minibatches_need_steps_per_epoch():
    env = gym.make("CartPole-v1")
    agent = make_ac(env)
    data = kerasrl.RolloutDataset(env, agent, episodes_per_batch=2, batch_size=8, seed=0)
    with pytest.raises(ValueError, match="give fit a steps_per_epoch"):
        agent.fit(data, epochs=1, verbose=0)
    agent.fit(data, epochs=1, steps_per_epoch=6, verbose=0)
    assert int(agent.num_gradient_steps.numpy()) == 6


def test_fit_on_an_environment_uses_the_agents_rollouts():
    agent = make_ac(gym.make("CartPole-v1"))
    history = agent.fit(gym.make("CartPole-v1"), epochs=2, verbose=0)  # one episode per epoch
    assert int(agent.num_gradient_steps.numpy()) == 2 and len(history.history["episode_return"]) == 2


def test_bad_settings_name_the_problem():
    env = gym.make("CartPole-v1")
    agent = make_ac(env)
    with pytest.raises(ValueError, match="either n_steps or episodes_per_batch"):
        kerasrl.RolloutDataset(env, agent, n_steps=8, episodes_per_batch=1)
    with pytest.raises(ValueError, match="batch_size 64 is larger"):
        kerasrl.RolloutDataset(env, agent, n_steps=8, batch_size=64)
    with pytest.raises(ValueError, match="on-policy agent"):
        kerasrl.RolloutDataset(env, kerasrl.DQN.from_env(env, hidden=HIDDEN))
    with pytest.raises(ValueError, match="observation space"):
        kerasrl.RolloutDataset(gym.make("Acrobot-v1"), agent)
    with pytest.raises(ValueError, match="at least one shared hidden layer"):
        kerasrl.ActorCritic.from_env(env, hidden=())
