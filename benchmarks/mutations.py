"""Mutation check: does the test suite notice when an agent's math or acting breaks?

    python benchmarks/mutations.py                      # every mutation, 2 at a time
    python benchmarks/mutations.py --only td3 dqn       # names starting with these
    python benchmarks/mutations.py --list

Each mutation is one line of the library changed the way a slip would change it
(a sign, min for max, a dropped factor). For each, the script copies the working
tree to a scratch folder, applies the mutation there, runs the tests that guard
that code, and reports the mutation *killed* (a test failed) or *survived* (all
passed). The unmutated copy runs first: if it fails, nothing else is run.
Prints one JSON line per mutation on stdout (and appends them to --out) and a
summary line; exits 1 if a mutation survived.

Why a fixed list and not mutmut or cosmic-ray: those generate every operator
swap in a file (hundreds for sac.py alone) and rerun the given tests for each;
with agent tests that train networks, that is hours per file on two cores, and
most of the mutants are in logging and config code. A list of the slips that
matter for an RL update (signs of objectives, min/max of twin critics, the
terminal mask, the discount, importance weights, greedy acting, target blends)
runs in minutes and stays readable. A new agent adds its own entries here.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from run import _claim_stdout, emit as emit_line  # noqa: E402  (benchmarks/run.py: JSON lines on stdout)


class Mutation(NamedTuple):
    name: str
    path: str  # relative to the repository root
    old: str  # must occur exactly once in the file
    new: str
    tests: tuple[str, ...]  # pytest arguments: the tests that guard this code


MATH = "tests/test_math.py"
TD3 = ("tests/test_td3.py", MATH)
SAC = (MATH, *(f"tests/test_agents.py::test_sac_{name}" for name in (
    "discrete_critic_target_bootstraps_with_one_minus_terminated",
    "value_network_target_uses_reward_scale_and_terminated", "terminal_transitions_ignore_next_observation")))
DQN = ("tests/test_dqn.py", MATH)
PPO_TESTS, ROLLOUT_TESTS = "tests/test_ppo.py", "tests/test_rollout.py"

MUTATIONS = [
    # TD3 / DDPG
    Mutation("td3-actor-sign", "kerasrl/agents/td3/td3.py",
             "actor_loss = -ops.mean(self.q_value(", "actor_loss = ops.mean(self.q_value(", TD3),
    Mutation("td3-target-max", "kerasrl/agents/td3/td3.py",
             "q_next = ops.minimum(q_next, self.q_value(critic_target", "q_next = ops.maximum(q_next, self.q_value(critic_target", TD3),
    Mutation("td3-target-no-terminal-mask", "kerasrl/agents/td3/td3.py",
             'return batch["reward"] + discount * (1.0 - batch["terminated"]) * q_next',
             'return batch["reward"] + discount * q_next', TD3),
    Mutation("td3-target-noise-unclipped", "kerasrl/agents/td3/td3.py",
             "ops.clip(a_next + ops.clip(eps, -self.target_noise_clip, self.target_noise_clip), -1.0, 1.0)",
             "ops.clip(a_next + eps, -1.0, 1.0)", TD3),
    Mutation("td3-critic-ignores-weights", "kerasrl/agents/td3/td3.py",
             "critic_loss = sum(ops.mean(weight * ops.square(q - y)) for q in qs)",
             "critic_loss = sum(ops.mean(ops.square(q - y)) for q in qs)", TD3),
    Mutation("td3-actor-on-second-critic", "kerasrl/agents/td3/td3.py",
             "actor_loss = -ops.mean(self.q_value(self.critics[0], s, self.actor(s)))",
             "actor_loss = -ops.mean(self.q_value(self.critics[-1], s, self.actor(s)))", TD3),
    Mutation("acting-noise-when-deterministic", "kerasrl/agents/base.py",
             "if not deterministic and noise is not None:", "if noise is not None:", TD3),
    Mutation("td3-policy-delay-off", "kerasrl/agents/td3/td3.py",
             "return ops.equal((self.num_gradient_steps + 1) % self.policy_delay, 0)",
             "return ops.equal((self.num_gradient_steps + 1) % 1, 0)", TD3),
    # SAC, continuous and discrete
    Mutation("sac-critic-target-max", "kerasrl/agents/sac/sac.py",
             "v_next = ops.minimum(q1_next, q2_next) - alpha * log_pi_next",
             "v_next = ops.maximum(q1_next, q2_next) - alpha * log_pi_next", SAC),
    Mutation("sac-critic-target-entropy-sign", "kerasrl/agents/sac/sac.py",
             "v_next = ops.minimum(q1_next, q2_next) - alpha * log_pi_next",
             "v_next = ops.minimum(q1_next, q2_next) + alpha * log_pi_next", SAC),
    Mutation("sac-actor-entropy-sign", "kerasrl/agents/sac/sac.py",
             "actor_loss = ops.mean(alpha * log_pi - min_q_pi)", "actor_loss = ops.mean(-alpha * log_pi - min_q_pi)", SAC),
    Mutation("sac-actor-q-sign", "kerasrl/agents/sac/sac.py",
             "actor_loss = ops.mean(alpha * log_pi - min_q_pi)", "actor_loss = ops.mean(alpha * log_pi + min_q_pi)", SAC),
    Mutation("sac-alpha-loss-sign", "kerasrl/agents/sac/sac.py",
             "alpha_loss = self.log_alpha * (entropy - self.target_entropy)",
             "alpha_loss = self.log_alpha * (self.target_entropy - entropy)", SAC),
    Mutation("sac-continuous-reward-scale-dropped", "kerasrl/agents/sac/sac.py",
             'r = batch["reward"] * self.reward_scale(self.num_gradient_steps)\n        not_done = 1.0 - batch["terminated"]\n        discount = batch.get("discount", self.gamma)  # gamma^m with n-step returns\n        weight = batch.get("weight", 1.0)  # importance sampling, with prioritized replay\n        alpha = ops.exp(self.log_alpha)\n\n        # Critic: y = r + gamma * (1 - d) * (min_i',
             'r = batch["reward"]\n        not_done = 1.0 - batch["terminated"]\n        discount = batch.get("discount", self.gamma)  # gamma^m with n-step returns\n        weight = batch.get("weight", 1.0)  # importance sampling, with prioritized replay\n        alpha = ops.exp(self.log_alpha)\n\n        # Critic: y = r + gamma * (1 - d) * (min_i', SAC),
    Mutation("sac-discrete-reward-scale-dropped", "kerasrl/agents/sac/sac.py",
             'r = batch["reward"] * self.reward_scale(self.num_gradient_steps)\n        not_done = 1.0 - batch["terminated"]\n        discount = batch.get("discount", self.gamma)  # gamma^m with n-step returns\n        weight = batch.get("weight", 1.0)  # importance sampling, with prioritized replay\n        alpha = ops.exp(self.log_alpha)\n\n        # Critic: y = r + gamma * (1 - d) * sum_a',
             'r = batch["reward"]\n        not_done = 1.0 - batch["terminated"]\n        discount = batch.get("discount", self.gamma)  # gamma^m with n-step returns\n        weight = batch.get("weight", 1.0)  # importance sampling, with prioritized replay\n        alpha = ops.exp(self.log_alpha)\n\n        # Critic: y = r + gamma * (1 - d) * sum_a', SAC),
    Mutation("sac-discrete-actor-q-sign", "kerasrl/agents/sac/sac.py",
             "actor_loss = ops.mean(ops.sum(pi * (alpha * log_pi - min_q), axis=-1))",
             "actor_loss = ops.mean(ops.sum(pi * (alpha * log_pi + min_q), axis=-1))", SAC),
    Mutation("sac-discrete-target-max", "kerasrl/agents/sac/sac.py",
             "q_next = ops.minimum(self.critic1_target(s_next), self.critic2_target(s_next))",
             "q_next = ops.maximum(self.critic1_target(s_next), self.critic2_target(s_next))", SAC),
    Mutation("sac-critic-ignores-weights", "kerasrl/agents/sac/sac.py",
             "critic_loss = 0.5 * ops.mean(weight * (ops.square(q1 - y) + ops.square(q2 - y)))\n        self.apply_gradients(\"critic\", tape, critic_loss, self.optimizer_roles()[\"critic\"])\n\n        # Actor: minimise E[",
             "critic_loss = 0.5 * ops.mean(ops.square(q1 - y) + ops.square(q2 - y))\n        self.apply_gradients(\"critic\", tape, critic_loss, self.optimizer_roles()[\"critic\"])\n\n        # Actor: minimise E[", SAC),
    Mutation("sac-acting-deterministic-samples", "kerasrl/agents/sac/sac.py",
             "        if deterministic:\n            u = mean", "        if False:\n            u = mean", SAC),
    Mutation("sac-discrete-acting-argmin", "kerasrl/agents/sac/sac.py",
             "return out.argmax(axis=-1) + self.action_space.start",
             "return out.argmin(axis=-1) + self.action_space.start", SAC),
    Mutation("sac-log-prob-tanh-correction-sign", "kerasrl/agents/base.py",
             "return ops.sum(log_normal - log_det, axis=-1)", "return ops.sum(log_normal + log_det, axis=-1)", SAC),
    # DQN
    Mutation("dqn-acting-argmin", "kerasrl/agents/dqn/dqn.py",
             'greedy = nets["q"](obs).argmax(axis=-1)', 'greedy = nets["q"](obs).argmin(axis=-1)', DQN),
    Mutation("dqn-double-uses-target-argmax", "kerasrl/agents/dqn/dqn.py",
             "a_star = ops.argmax(self.q_network(s_next), axis=-1)", "a_star = ops.argmax(self.q_target(s_next), axis=-1)", DQN),
    Mutation("dqn-no-terminal-mask", "kerasrl/agents/dqn/dqn.py",
             "y = ops.stop_gradient(r + discount * not_done * q_next)", "y = ops.stop_gradient(r + discount * q_next)", DQN),
    Mutation("dqn-ignores-weights", "kerasrl/agents/dqn/dqn.py",
             "loss = ops.mean(weight * per_sample)", "loss = ops.mean(per_sample)", DQN),
    Mutation("dqn-huber-linear-part", "kerasrl/agents/dqn/dqn.py",
             "per_sample = 0.5 * ops.square(small) + (ops.abs(td_error) - small)",
             "per_sample = 0.5 * ops.square(small)", DQN),
    Mutation("dqn-explores-when-deterministic", "kerasrl/agents/dqn/dqn.py",
             "return greedy if deterministic else acting.epsilon_greedy(",
             "return acting.epsilon_greedy(", DQN),
    Mutation("dueling-no-mean-subtraction", "kerasrl/networks.py",
             "return value + advantage - ops.mean(advantage, axis=-1, keepdims=True)",
             "return value + advantage", DQN),
    Mutation("dueling-acting-no-mean-subtraction", "kerasrl/networks.py",
             "return z[:, :1] + advantage - advantage.mean(axis=-1, keepdims=True)",
             "return z[:, :1] + advantage", DQN),
    Mutation("lstm-acting-forget-gate-dropped", "kerasrl/networks.py",
             "c[b, j] = z[units + j] * c[b, j] + z[j] * z[2 * units + j]", "c[b, j] = z[j] * z[2 * units + j]",
             ("tests/test_lstm_td3.py",)),
    Mutation("memory-acting-past-actions-dropped", "kerasrl/networks.py",
             "past[:, obs_dim:] = history_action.reshape(batch * length, act_dim)", "past[:, obs_dim:] = 0",
             ("tests/test_lstm_td3.py",)),
    # Replay: what the updates learn from
    Mutation("nstep-discount-off-by-one", "kerasrl/buffers.py",
             'rows["discount"].append(self.gamma ** (length - i))', 'rows["discount"].append(self.gamma ** (length - i - 1))',
             ("tests/test_nstep.py",)),
    Mutation("nstep-return-undiscounted", "kerasrl/buffers.py",
             "ret = reward + self.gamma * ret", "ret = reward + ret", ("tests/test_nstep.py",)),
    Mutation("per-weights-sign", "kerasrl/buffers.py",
             "return (priorities / buffer.extreme_tree.root) ** -beta",
             "return (priorities / buffer.extreme_tree.root) ** beta", ("tests/test_prioritized.py",)),
    Mutation("truncation-stored-as-terminal", "kerasrl/data.py",
             "step.terminated[rows],\n", "(step.terminated | step.truncated)[rows],\n",
             ("tests/test_data.py", "tests/test_nstep.py")),
    # Acting: the environment loop and exploration wrappers
    Mutation("acting-noise-unclipped", "kerasrl/acting.py",
             "unit = np.clip(unit + np.reshape(noise, unit.shape), -1.0, 1.0)",
             "unit = unit + np.reshape(noise, unit.shape)", ("tests/test_acting.py", MATH)),
    Mutation("acting-state-not-restarted", "kerasrl/acting.py",
             "            self.state = self.policy.reset_state(self.state, starts)", "            pass",
             ("tests/test_acting.py", "tests/test_lstm_td3.py")),
    Mutation("acting-final-observation-lost", "kerasrl/acting.py",
             "                stored_next[i] = info[\"final_obs\"][i]", "                pass",
             ("tests/test_acting.py", "tests/test_data.py")),
    # Returns and advantages (the on-policy agents' targets)
    Mutation("returns-gae-crosses-episodes", "kerasrl/returns.py",
             "running = deltas[t] + gamma * gae_lambda * continues[t] * running",
             "running = deltas[t] + gamma * gae_lambda * running", ("tests/test_returns.py",)),
    Mutation("returns-gae-bootstraps-termination", "kerasrl/returns.py",
             "deltas = rewards + gamma * not_terminated * next_values - values",
             "deltas = rewards + gamma * next_values - values", ("tests/test_returns.py",)),
    Mutation("returns-mc-ignores-truncation", "kerasrl/returns.py",
             "cut = truncated[t] | (t == len(rewards) - 1)", "cut = t == len(rewards) - 1", ("tests/test_returns.py",)),
    Mutation("returns-n-step-bootstraps-termination", "kerasrl/returns.py",
             "bootstrap = np.where(terminated[last, np.arange(envs)], 0.0, next_values[last, np.arange(envs)])",
             "bootstrap = next_values[last, np.arange(envs)]", ("tests/test_returns.py",)),
    # On-policy agents: PPO, A2C and the one-network actor-critic
    Mutation("ppo-surrogate-max", "kerasrl/agents/ppo/ppo.py",
             "surrogate = ops.minimum(ratio * advantage,", "surrogate = ops.maximum(ratio * advantage,",
             ("tests/test_ppo.py::test_ppo_loss_is_the_clipped_surrogate",)),
    Mutation("ppo-ratio-inverted", "kerasrl/agents/ppo/ppo.py",
             "log_ratio = log_prob - old_log_prob", "log_ratio = old_log_prob - log_prob",
             ("tests/test_ppo.py::test_ppo_loss_is_the_clipped_surrogate",)),
    Mutation("a2c-policy-sign", "kerasrl/agents/a2c/a2c.py",
             "policy_loss = -ops.mean(advantage * log_prob)", "policy_loss = ops.mean(advantage * log_prob)",
             ("tests/test_ppo.py::test_a2c_loss_is_the_policy_gradient_with_a_value_baseline",)),
    Mutation("a2c-rmsprop-epsilon-inside-the-root", "kerasrl/agents/a2c/a2c.py",
             "RMSprop(7e-4, rho=0.99, epsilon=1e-10)", "RMSprop(7e-4, rho=0.99, epsilon=1e-5)",
             ("tests/test_ppo.py::test_a2c_default_rmsprop_steps_as_stable_baselines3s_torch_rmsprop",)),
    Mutation("actor-critic-actor-sign", "kerasrl/agents/actor_critic/actor_critic.py",
             "actor_loss = -ops.sum(log_prob * advantage)", "actor_loss = ops.sum(log_prob * advantage)",
             ("tests/test_rollout.py::test_the_update_is_the_examples_actor_critic_loss",)),
    Mutation("actor-critic-advantage-not-held", "kerasrl/agents/actor_critic/actor_critic.py",
             "advantage = ops.stop_gradient(g - value)", "advantage = g - value",
             ("tests/test_rollout.py::test_the_actor_loss_sends_no_gradient_into_the_value_head",)),
    Mutation("ppo-value-clip-ignored", "kerasrl/agents/ppo/ppo.py",
             "value = old_value + ops.clip(value - old_value, -epsilon_vf, epsilon_vf)", "value = value", (PPO_TESTS,)),
    Mutation("ppo-entropy-bonus-sign", "kerasrl/agents/ppo/ppo.py",
             "loss = policy_loss + self.ent_coef * entropy_loss", "loss = policy_loss - self.ent_coef * entropy_loss",
             (PPO_TESTS,)),
    Mutation("ppo-target-kl-threshold", "kerasrl/agents/ppo/ppo.py",
             "approx_kl > 1.5 * self.target_kl", "approx_kl > 15.0 * self.target_kl", (PPO_TESTS,)),
    Mutation("a2c-entropy-bonus-sign", "kerasrl/agents/a2c/a2c.py",
             "loss = policy_loss + self.ent_coef * entropy_loss", "loss = policy_loss - self.ent_coef * entropy_loss",
             (PPO_TESTS,)),
    Mutation("on-policy-advantage-not-centred", "kerasrl/agents/on_policy.py",
             "advantage = (advantage - ops.mean(advantage)) / (ops.std(advantage) + 1e-8)",
             "advantage = advantage / (ops.std(advantage) + 1e-8)", (PPO_TESTS,)),
    Mutation("on-policy-gradient-not-clipped", "kerasrl/agents/on_policy.py",
             "grads, _ = tf.clip_by_global_norm(grads, self.max_grad_norm)", "pass", (PPO_TESTS, ROLLOUT_TESTS)),
    Mutation("gaussian-log-prob-std-sign", "kerasrl/agents/on_policy.py",
             "/ ops.exp(log_std)) - log_std - 0.5 * LOG_2PI", "/ ops.exp(log_std)) + log_std - 0.5 * LOG_2PI",
             (PPO_TESTS, ROLLOUT_TESTS)),
    Mutation("gaussian-rollout-log-prob-std-sign", "kerasrl/agents/on_policy.py",
             "/ std) - log_std - 0.5 * LOG_2PI", "/ std) + log_std - 0.5 * LOG_2PI", (PPO_TESTS, ROLLOUT_TESTS)),
    Mutation("gaussian-entropy-sign", "kerasrl/agents/on_policy.py",
             "entropy = ops.sum(log_std + 0.5 * (LOG_2PI + 1.0))", "entropy = ops.sum(-log_std + 0.5 * (LOG_2PI + 1.0))",
             (PPO_TESTS, ROLLOUT_TESTS)),
    Mutation("explained-variance-inverted", "kerasrl/agents/on_policy.py",
             "float(1.0 - np.var(targets - values) / variance)", "float(np.var(targets - values) / variance)",
             (PPO_TESTS, ROLLOUT_TESTS)),
    Mutation("running-moments-between-batch-term-dropped", "kerasrl/agents/on_policy.py",
             " + delta ** 2 * old_count * batch_count / total) / total", ") / total", (PPO_TESTS,)),
    Mutation("observation-normaliser-acting-unclipped", "kerasrl/agents/on_policy.py",
             "return np.clip((x - self.mean) / self.std, -clip, clip).astype(np.float32)",
             "return ((x - self.mean) / self.std).astype(np.float32)", (PPO_TESTS, ROLLOUT_TESTS)),
    Mutation("reward-normalisation-undiscounted", "kerasrl/rollout.py",
             "self._discounted = self._discounted * self.agent.gamma + rollout[\"reward\"][t]",
             "self._discounted = self._discounted + rollout[\"reward\"][t]", (PPO_TESTS,)),
    Mutation("rollout-truncation-not-bootstrapped", "kerasrl/rollout.py",
             "next_values[done & ~rollout[\"truncated\"]] = 0.0", "next_values[done] = 0.0", (ROLLOUT_TESTS,)),
    Mutation("returns-gae-lambda-dropped", "kerasrl/returns.py",
             "running = deltas[t] + gamma * gae_lambda * continues[t] * running",
             "running = deltas[t] + gamma * continues[t] * running", ("tests/test_returns.py",)),
    Mutation("actor-critic-returns-not-centred", "kerasrl/agents/actor_critic/actor_critic.py",
             "g = (g - ops.mean(g)) / (ops.std(g) + EPSILON)", "g = g / (ops.std(g) + EPSILON)", (ROLLOUT_TESTS,)),
    Mutation("on-policy-greedy-argmin", "kerasrl/agents/on_policy.py",
             "return out.argmax(axis=-1) + self.action_space.start", "return out.argmin(axis=-1) + self.action_space.start",
             ("tests/test_rollout.py::test_deterministic_act_is_the_argmax_of_the_policy_head",)),
    Mutation("on-policy-rollout-without-waiting-for-the-update", "kerasrl/agents/on_policy.py",
             "with tf.control_dependencies(after):", "with tf.control_dependencies([]):",
             ("tests/test_rollout.py::test_many_steps_per_execution_still_collect_after_every_update_and_a_seed_repeats",)),
    Mutation("on-policy-fetch-before-the-update-lands", "kerasrl/agents/on_policy.py",
             "ran_ops = [t.op for t in tf.nest.flatten(logs)]", "ran_ops = []",
             ("tests/test_rollout.py::test_many_steps_per_execution_still_collect_after_every_update_and_a_seed_repeats",)),
    # History replay with n-step returns
    Mutation("history-n-step-next-window-from-first-step", "kerasrl/buffers.py",
             'self._window(self.storage["last_step"][indices])', 'self._window(self.storage["step"][indices])',
             ("tests/test_history_replay.py",)),
    # Shared machinery
    Mutation("soft-target-blend-swapped", "kerasrl/agents/base.py",
             "tw.assign(tau * w + (1.0 - tau) * tw)", "tw.assign((1.0 - tau) * w + tau * tw)",
             ("tests/test_callbacks.py::test_soft_target_update_tau", "tests/test_td3.py")),
    Mutation("eval-callback-stochastic", "callbacks/evaluation.py",
             "deterministic=self.deterministic)", "deterministic=False)", (MATH,)),
    Mutation("eval-callback-first-epoch-unevaluated", "callbacks/evaluation.py",
             "if self._first_epoch or (epoch + 1) % self.every_epochs == 0:",
             "if (epoch + 1) % self.every_epochs == 0:",
             ("tests/test_callbacks.py::test_early_stopping_keeps_the_best_evaluated_weights_when_evaluations_are_epochs_apart",)),
    Mutation("hyperband-child-starts-afresh", "tuning/tuner.py",
             "for source in (folder, parent and self._execution_dir(parent, execution)):",
             "for source in (folder,):", ("tests/test_tuning.py::test_hyperband_trials_continue_from_their_parent",)),
]


def repository_files() -> list[str]:
    """The working tree as git sees it: tracked files and untracked ones not ignored."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                         cwd=ROOT, check=True, capture_output=True).stdout.decode()
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


def make_copy(dest: Path) -> None:
    for rel in repository_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    # pyproject maps some packages to other folders (kerasrl.callbacks -> callbacks/).
    # The editable install would import those from the original tree, so the
    # copy links them under its own kerasrl/ to import the mutated files.
    with open(dest / "pyproject.toml", "rb") as f:
        package_dir = tomllib.load(f).get("tool", {}).get("setuptools", {}).get("package-dir", {})
    for package, folder in package_dir.items():
        link = dest / Path(*package.split("."))
        if not link.exists():
            link.symlink_to(dest / folder, target_is_directory=True)


def run_tests(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, float, str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                              cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, time.perf_counter() - start, "timeout"
    failed = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return proc.returncode, time.perf_counter() - start, (failed[0] if failed else proc.stdout.strip()[-200:])


def check(mutation: Mutation | None, tests: tuple[str, ...], timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="kerasrl-mutation-") as tmp:
        copy = Path(tmp)
        make_copy(copy)
        if mutation is not None:
            file = copy / mutation.path
            text = file.read_text()
            if text.count(mutation.old) != 1 or mutation.old == mutation.new:
                return {"mutation": mutation.name, "status": "stale",
                        "detail": f"{mutation.path}: the line to mutate occurs {text.count(mutation.old)} times"}
            file.write_text(text.replace(mutation.old, mutation.new))
        rc, seconds, detail = run_tests(copy, tests, timeout)
    name = mutation.name if mutation else "unmutated"
    if rc == 0:
        status = "survived" if mutation else "passed"
    elif rc == 1:
        status = "killed" if mutation else "failed"
    else:
        status = "error"  # collection errors, timeouts, usage errors: not a verdict
    return {"mutation": name, "status": status, "seconds": round(seconds, 1), "tests": list(tests),
            "detail": detail}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", default=None, help="run the mutations whose names start with these")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=900, help="seconds per test run")
    p.add_argument("--list", action="store_true")
    p.add_argument("--out", default=None, help="also append the JSON lines to this file")
    args = p.parse_args(argv)

    chosen = [m for m in MUTATIONS if not args.only or m.name.startswith(tuple(args.only))]
    if args.list:
        for m in chosen:
            print(f"{m.name:40s} {m.path}  [{' '.join(m.tests)}]")
        return 0

    _claim_stdout()

    def emit(record: dict) -> None:
        emit_line(record, args.out)

    every_test = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
    baseline = check(None, every_test, args.timeout)
    emit(baseline)
    if baseline["status"] != "passed":
        print(f"The unmutated tests do not pass ({baseline['detail']}); fix them first.", file=sys.stderr)
        return 2
    results = []
    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
        for r in pool.map(lambda m: check(m, m.tests, args.timeout), chosen):  # in order, as they finish
            emit(r)
            results.append(r)
    counts = {s: sum(r["status"] == s for r in results) for s in ("killed", "survived", "stale", "error")}
    emit({"summary": counts, "survived": [r["mutation"] for r in results if r["status"] == "survived"],
          "command": "python " + " ".join(sys.argv)})
    return 1 if counts["survived"] or counts["stale"] or counts["error"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
