"""The agent contract (act, fit, .keras round trip) and SAC specifics.

`AGENT_CASES` is the list every agent must pass: add DQN, TD3, ... by
appending an `AgentCase` (an id, an environment id and a builder of the
uncompiled agent); the contract tests below then run on it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import gymnasium as gym
import keras
import numpy as np
import pytest
from gymnasium.wrappers import RescaleAction

import kerasrl
from support import HIDDEN, CountingEnv, batch_dict, log_softmax, make_data, make_sac, np_forward, perturb_targets


@dataclasses.dataclass
class AgentCase:
    id: str
    env_id: str
    build: Callable[[Any], kerasrl.Agent]  # env -> uncompiled agent
    compile_kwargs: dict = dataclasses.field(default_factory=dict)

    def make_env(self) -> gym.Env:
        return gym.make(self.env_id)

    def make_agent(self, env, **compile_overrides) -> kerasrl.Agent:
        agent = self.build(env)
        kwargs = {"optimizer": keras.optimizers.Adam(1e-3), **self.compile_kwargs, **compile_overrides}
        agent.compile(**kwargs)
        return agent


AGENT_CASES = [
    AgentCase("sac-box", "Pendulum-v1",
              lambda env: kerasrl.SAC.from_env(env, hidden=HIDDEN, seed=0)),
    AgentCase("sac-box-value-net", "Pendulum-v1",
              lambda env: kerasrl.SAC.from_env(env, hidden=HIDDEN, seed=0, use_value_network=True),
              {"jit_compile": False}),
    AgentCase("sac-discrete", "LunarLander-v3",
              lambda env: kerasrl.SAC.from_env(env, hidden=HIDDEN, seed=0),
              {"jit_compile": False}),
    AgentCase("sac-discrete-value-net", "LunarLander-v3",
              lambda env: kerasrl.SAC.from_env(env, hidden=HIDDEN, seed=0, use_value_network=True)),
    AgentCase("dqn", "CartPole-v1",
              lambda env: kerasrl.DQN.from_env(env, hidden=HIDDEN, seed=0, double=False)),
    AgentCase("dqn-dueling-double", "LunarLander-v3",
              lambda env: kerasrl.DQN.from_env(env, hidden=HIDDEN, seed=0, dueling=True, loss="mse")),
    AgentCase("td3", "Pendulum-v1",
              lambda env: kerasrl.TD3.from_env(env, hidden=HIDDEN, seed=0, policy_delay=2)),
    AgentCase("ddpg", "MountainCarContinuous-v0",
              lambda env: kerasrl.DDPG.from_env(env, hidden=HIDDEN, seed=0), {"jit_compile": False}),
    AgentCase("td3-mixed-bfloat16", "Pendulum-v1",
              lambda env: kerasrl.TD3.from_env(env, hidden=HIDDEN, seed=0, dtype="mixed_bfloat16")),
    AgentCase("sac-box-mixed-bfloat16", "Pendulum-v1",
              lambda env: kerasrl.SAC.from_env(env, hidden=HIDDEN, seed=0, dtype="mixed_bfloat16")),
    AgentCase("lstm-td3", "Pendulum-v1",
              lambda env: kerasrl.LSTMTD3.from_env(env, history_length=3, memory_hidden=(16,), lstm_units=16,
                                                   feature_hidden=(16,), hidden=(16,), seed=0)),
]


def act(agent: kerasrl.Agent, observation: Any, **kwargs: Any) -> np.ndarray:
    """The action of `agent.act`; a memory agent starts from its initial state and also returns the next one."""
    out = agent.act(observation, **kwargs)
    return out[0] if agent.stateful else out


def assert_same_variables(a, b) -> None:
    """Same variables in the same order (layer names in paths differ between instances)."""
    a, b = list(a), list(b)
    assert len(a) == len(b) > 0
    for v, v2 in zip(a, b):
        assert v.name == v2.name and v.shape == v2.shape, (v.path, v2.path)
        np.testing.assert_array_equal(v.numpy(), v2.numpy(), err_msg=v.path)


def optimizer_steps(agent, role: str, updates: int) -> int:
    """Steps of a role's optimizer after `updates` gradient steps (TD3's actor: one per policy_delay)."""
    return updates // getattr(agent, "policy_delay", 1) if role == "actor" else updates


def optimizers(agent) -> dict[str, keras.optimizers.Optimizer]:
    return {role: getattr(agent, f"{role}_optimizer") for role in agent.optimizer_roles()}


@pytest.mark.parametrize("case", AGENT_CASES, ids=lambda c: c.id)
class TestAgentContract:
    def test_act_single_and_batch(self, case):
        env = case.make_env()
        agent = case.build(env)  # acting needs no compile
        obs, _ = env.reset(seed=0)
        for deterministic in (True, False):
            action = act(agent, obs, deterministic=deterministic)
            assert env.action_space.contains(action), action
            assert np.shape(action) == env.action_space.shape
        batch = np.stack([env.observation_space.sample() for _ in range(7)])
        actions = act(agent, batch)
        assert actions.shape == (7,) + env.action_space.shape
        assert all(env.action_space.contains(a) for a in actions)
        # Deterministic acting is a function of the observation.
        np.testing.assert_array_equal(act(agent, batch, deterministic=True), act(agent, batch, deterministic=True))
        # (up to float rounding: a batch goes through a different matmul kernel)
        np.testing.assert_allclose(act(agent, batch[2], deterministic=True), act(agent, batch, deterministic=True)[2],
                                   rtol=1e-5, atol=1e-6)
        # The action steps the environment.
        env.step(act(agent, obs))

    def test_fit_counters_with_steps_per_execution(self, case):
        env = case.make_env()
        # steps_per_epoch is counted in updates, even when steps_per_execution does not divide it.
        agent = case.make_agent(env, steps_per_execution=4, jit_compile=False)
        data = make_data(env, agent, learning_starts=32, batch_size=16)
        history = agent.fit(data, epochs=2, steps_per_epoch=10, verbose=0)
        assert history.epoch == [0, 1]
        assert int(agent.num_gradient_steps.numpy()) == 20
        for role, opt in optimizers(agent).items():
            assert int(opt.iterations.numpy()) == optimizer_steps(agent, role, 20), role
        # One env step per update after the 32 warm-up steps.
        assert history.history["env_steps"] == [42.0, 52.0]
        assert int(agent.num_env_steps.numpy()) == 52
        assert data.env_steps >= 52 and len(data.buffer) == data.env_steps
        for key in agent.metric_names:
            assert np.all(np.isfinite(history.history[key])), key

    def test_save_load_round_trip(self, case, tmp_path):
        env = case.make_env()
        agent = case.make_agent(env)
        data = make_data(env, agent, learning_starts=32, batch_size=16)
        agent.fit(data, epochs=2, steps_per_epoch=10, verbose=0)
        obs, _ = env.reset(seed=3)
        path = tmp_path / "agent.keras"
        agent.save(path)
        again = keras.saving.load_model(path)

        assert type(again) is type(agent)
        assert again.get_config() == agent.get_config()
        assert again.observation_space == agent.observation_space == env.observation_space
        assert again.action_space == agent.action_space == env.action_space
        assert again.compiled
        assert again.steps_per_execution == agent.steps_per_execution
        assert bool(again.jit_compile) == bool(agent.jit_compile)

        # Every variable of the model: online and target networks, counters, log_alpha ...
        assert_same_variables(agent.variables, again.variables)
        for (online, target), (online2, target2) in zip(agent.target_pairs(), again.target_pairs()):
            assert_same_variables(online.weights, online2.weights)
            assert_same_variables(target.weights, target2.weights)
            assert not all(np.array_equal(w.numpy(), tw.numpy()) for w, tw in zip(online.weights, target.weights))
        assert int(again.num_gradient_steps.numpy()) == int(agent.num_gradient_steps.numpy()) == 20
        assert int(again.num_env_steps.numpy()) == int(agent.num_env_steps.numpy()) == 52
        if hasattr(agent, "log_alpha"):
            assert float(again.log_alpha.numpy()) == float(agent.log_alpha.numpy()) != 0.0

        # Every optimizer: iterations and slot variables.
        opts, opts2 = optimizers(agent), optimizers(again)
        assert opts.keys() == opts2.keys()
        for role in opts:
            assert (int(opts2[role].iterations.numpy()) == int(opts[role].iterations.numpy())
                    == optimizer_steps(agent, role, 20)), role
            assert len(opts2[role].variables) == len(opts[role].variables) > 2, role
            for v, v2 in zip(opts[role].variables, opts2[role].variables):
                np.testing.assert_array_equal(v.numpy(), v2.numpy(), err_msg=f"{role}: {v.path}")
            assert any(np.any(v.numpy() != 0) for v in opts2[role].variables[2:]), role

        # The same policy.
        np.testing.assert_array_equal(act(again, obs, deterministic=True), act(agent, obs, deterministic=True))
        batch = np.stack([env.observation_space.sample() for _ in range(5)])
        np.testing.assert_array_equal(act(again, batch, deterministic=True), act(agent, batch, deterministic=True))

        # And it trains on.
        history = again.fit(make_data(env, again, learning_starts=32, batch_size=16),
                            epochs=1, steps_per_epoch=5, verbose=0)
        assert int(again.num_gradient_steps.numpy()) == 25
        for role, opt in optimizers(again).items():
            assert int(opt.iterations.numpy()) == optimizer_steps(again, role, 25), role
        assert np.isfinite(history.history["loss"][-1])


@pytest.mark.parametrize("algo,env_id", [("SAC", "Pendulum-v1"), ("SAC", "CartPole-v1"), ("TD3", "Pendulum-v1"),
                                         ("DQN", "CartPole-v1")])
def test_mixed_bfloat16_hidden_layers_and_float32_outputs(algo, env_id):
    env = gym.make(env_id)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")  # Keras' global switch reaches the agent too
    try:
        agent = getattr(kerasrl, algo).from_env(env, hidden=HIDDEN, seed=0)
    finally:
        keras.config.set_dtype_policy(previous)
    assert agent.dtype_policy.name == "mixed_bfloat16"
    obs = np.stack([env.observation_space.sample() for _ in range(4)]).astype("float32")
    for net in agent.policy_networks().values():
        *hidden, head = net.layers
        assert [layer.compute_dtype for layer in hidden] == ["bfloat16"] * len(HIDDEN)
        assert head.compute_dtype == "float32"
        assert all(v.dtype == "float32" for v in net.weights)
        assert keras.ops.convert_to_numpy(net(agent.preprocess(obs))).dtype == np.float32
    # A fitted agent's losses are finite and stay float32.
    agent.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = agent.fit(make_data(env, agent, learning_starts=32, batch_size=16), epochs=1, steps_per_epoch=10,
                        verbose=0)
    assert all(np.isfinite(history.history[key][-1]) for key in agent.metric_names)
    assert type(agent).from_config(agent.get_config()).dtype_policy.name == "mixed_bfloat16"


# ------------------------------------------------------------------- acting
def test_policy_snapshot_holds_until_refreshed(pendulum):
    agent = make_sac(pendulum)
    obs = np.stack([pendulum.observation_space.sample() for _ in range(5)])
    before = agent.act(obs, deterministic=True)
    agent.fit(make_data(pendulum, agent), epochs=1, steps_per_epoch=10, verbose=0)
    snapshot = agent.policy_snapshot()
    acted = agent.act(obs, deterministic=True)
    assert not np.array_equal(acted, before)  # fit renewed the copy
    for w in agent.actor.weights:  # the update writes into the variables the copy was read from
        w.assign(w + 1.0)
    np.testing.assert_array_equal(agent.act(obs, deterministic=True), acted)
    agent.refresh_policy()
    assert agent.policy_snapshot() is snapshot
    assert not np.array_equal(agent.act(obs, deterministic=True), acted)


def test_box_actions_respect_asymmetric_bounds():
    env = RescaleAction(gym.make("Pendulum-v1"), min_action=np.float32(0.0), max_action=np.float32(5.0))
    agent = make_sac(env, compile=False)
    assert np.all(agent.action_space.low == 0.0) and np.all(agent.action_space.high == 5.0)
    obs = np.stack([env.observation_space.sample() for _ in range(500)])
    for deterministic in (True, False):
        actions = agent.act(obs, deterministic=deterministic)
        assert actions.shape == (500, 1) and actions.dtype == np.float32
        assert actions.min() >= 0.0 and actions.max() <= 5.0
        assert all(env.action_space.contains(a) for a in actions)
    # Spread over the range, not stuck inside [-1, 1].
    assert agent.act(obs).max() > 1.0
    obs0, _ = env.reset(seed=0)
    env.step(agent.act(obs0))


def test_scale_unscale_round_trip():
    env = CountingEnv(low=-3.0, high=7.0)
    agent = make_sac(env, compile=False)
    unit = np.array([[-1.0], [0.0], [0.5], [1.0]], dtype=np.float32)
    scaled = agent.scale_action(unit)
    np.testing.assert_allclose(scaled, [[-3.0], [2.0], [4.5], [7.0]])
    np.testing.assert_allclose(np.asarray(agent.unscale_action(scaled)), unit, atol=1e-6)


def test_discrete_action_space_with_start():
    agent = kerasrl.SAC(gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Discrete(4, start=2),
                        hidden=HIDDEN, seed=0)
    actions = agent.act(np.random.default_rng(0).uniform(-1, 1, (200, 2)).astype(np.float32))
    assert set(np.unique(actions)) <= {2, 3, 4, 5}
    assert len(np.unique(actions)) > 1  # a sampled, not constant, policy


def test_discrete_observation_space_acts_and_fits():
    env = gym.make("FrozenLake-v1")
    agent = make_sac(env)
    assert env.action_space.contains(agent.act(0))
    assert agent.act(np.array([0, 5, 15])).shape == (3,)
    history = agent.fit(make_data(env, agent, learning_starts=20, batch_size=8), epochs=1, steps_per_epoch=5,
                        verbose=0)
    assert np.isfinite(history.history["critic_loss"][0])


def test_evaluate_env_is_seeded_and_takes_ids():
    env = gym.make("CartPole-v1")
    agent = make_sac(env, compile=False)
    a = agent.evaluate_env(gym.make("CartPole-v1"), episodes=3, seed=1)
    b = agent.evaluate_env("CartPole-v1", episodes=3, seed=1)
    assert a.shape == (3,)
    np.testing.assert_array_equal(a, b)
    assert np.all(a >= 1) and np.all(a <= 500)


def test_fit_requires_compile(pendulum):
    agent = make_sac(pendulum, compile=False)
    with pytest.raises(RuntimeError, match="compile"):
        agent.fit(pendulum, epochs=1, steps_per_epoch=1)


def test_dataset_of_another_agent_rejected(pendulum):
    agent, other = make_sac(pendulum), make_sac(pendulum)
    with pytest.raises(ValueError, match="different agent"):
        agent.fit(make_data(pendulum, other), epochs=1, steps_per_epoch=1)


def test_per_role_optimizers_round_trip(tmp_path):
    env = gym.make("Pendulum-v1")
    agent = make_sac(env, compile=False)
    lr = keras.optimizers.schedules.ExponentialDecay(1e-3, decay_steps=100, decay_rate=0.5)
    agent.compile(optimizer=keras.optimizers.Adam(lr), critic_optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  jit_compile=False, steps_per_execution=2)
    assert isinstance(agent.critic_optimizer, keras.optimizers.SGD)
    assert isinstance(agent.actor_optimizer, keras.optimizers.Adam)
    assert agent.actor_optimizer is not agent.alpha_optimizer
    agent.fit(make_data(env, agent), epochs=1, steps_per_epoch=4, verbose=0)
    agent.save(tmp_path / "agent.keras")
    again = keras.saving.load_model(tmp_path / "agent.keras")
    assert isinstance(again.critic_optimizer, keras.optimizers.SGD)
    assert isinstance(again.actor_optimizer, keras.optimizers.Adam)
    assert again.actor_optimizer.get_config()["learning_rate"] == agent.actor_optimizer.get_config()["learning_rate"]
    assert again.steps_per_execution == 2
    for v, v2 in zip(agent.critic_optimizer.variables, again.critic_optimizer.variables):
        np.testing.assert_array_equal(v.numpy(), v2.numpy())
    with pytest.raises(ValueError, match="value_optimizer"):
        agent.compile(value_optimizer="adam")


# ------------------------------------------------------------- SAC targets
def test_sac_discrete_critic_target_bootstraps_with_one_minus_terminated(cartpole):
    agent = make_sac(cartpole, gamma=0.9)
    perturb_targets(agent)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(4, 4)).astype(np.float32)
    next_obs = rng.normal(size=(4, 4)).astype(np.float32)
    actions = np.array([0, 1, 1, 0])
    rewards = np.array([1.0, -2.0, 0.5, 3.0])
    terminated = np.array([0.0, 1.0, 0.0, 1.0])

    alpha = float(np.exp(agent.log_alpha.numpy()))
    log_pi = log_softmax(np_forward(agent.actor, next_obs))
    q_next = np.minimum(np_forward(agent.critic1_target, next_obs), np_forward(agent.critic2_target, next_obs))
    v_next = (np.exp(log_pi) * (q_next - alpha * log_pi)).sum(-1)
    y = rewards + 0.9 * (1.0 - terminated) * v_next
    q1 = np_forward(agent.critic1, obs)[np.arange(4), actions]
    q2 = np_forward(agent.critic2, obs)[np.arange(4), actions]
    expected = 0.5 * np.mean((q1 - y) ** 2) + 0.5 * np.mean((q2 - y) ** 2)

    metrics = agent.update(batch_dict(obs, actions, rewards, next_obs, terminated))
    assert float(metrics["critic_loss"]) == pytest.approx(expected, rel=1e-5)
    # Had the terminal rows bootstrapped, the loss would differ.
    y_wrong = rewards + 0.9 * v_next
    wrong = 0.5 * np.mean((q1 - y_wrong) ** 2) + 0.5 * np.mean((q2 - y_wrong) ** 2)
    assert abs(wrong - expected) > 1e-3


def test_sac_value_network_target_uses_reward_scale_and_terminated(pendulum):
    agent = make_sac(pendulum, gamma=0.95, use_value_network=True, reward_scale=2.0)
    perturb_targets(agent)
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(5, 3)).astype(np.float32)
    next_obs = rng.normal(size=(5, 3)).astype(np.float32)
    actions = rng.uniform(-2, 2, size=(5, 1)).astype(np.float32)
    rewards = rng.normal(size=5)
    terminated = np.array([1.0, 0.0, 0.0, 1.0, 0.0])

    v_next = np_forward(agent.value_target, next_obs)[:, 0]
    y = 2.0 * rewards + 0.95 * (1.0 - terminated) * v_next
    unit = actions / 2.0  # Pendulum's bounds are [-2, 2]
    x = np.concatenate([obs, unit], axis=-1)
    q1, q2 = np_forward(agent.critic1, x)[:, 0], np_forward(agent.critic2, x)[:, 0]
    expected = 0.5 * np.mean((q1 - y) ** 2) + 0.5 * np.mean((q2 - y) ** 2)

    metrics = agent.update(batch_dict(obs, actions, rewards, next_obs, terminated))
    assert float(metrics["critic_loss"]) == pytest.approx(expected, rel=1e-5)


def test_sac_terminal_transitions_ignore_next_observation(pendulum):
    """With terminated=1 the target is the reward alone, whatever s' and the sampled a' are."""
    agent = make_sac(pendulum)
    rng = np.random.default_rng(2)
    obs = rng.normal(size=(6, 3)).astype(np.float32)
    actions = rng.uniform(-2, 2, size=(6, 1)).astype(np.float32)
    rewards = rng.normal(size=6)
    x = np.concatenate([obs, actions / 2.0], axis=-1)
    q1, q2 = np_forward(agent.critic1, x)[:, 0], np_forward(agent.critic2, x)[:, 0]
    expected = 0.5 * np.mean((q1 - rewards) ** 2) + 0.5 * np.mean((q2 - rewards) ** 2)
    weights = agent.get_weights()
    losses = []
    for scale in (0.0, 100.0):
        agent.set_weights(weights)
        next_obs = (scale * rng.normal(size=(6, 3))).astype(np.float32)
        metrics = agent.update(batch_dict(obs, actions, rewards, next_obs, np.ones(6)))
        losses.append(float(metrics["critic_loss"]))
    assert losses[0] == pytest.approx(expected, rel=1e-5)
    assert losses[1] == pytest.approx(expected, rel=1e-5)
