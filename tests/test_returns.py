"""Returns and advantages over rollouts (kerasrl.returns): the on-policy agents' targets."""

import numpy as np
import pytest

from kerasrl import returns


def random_rollout(seed: int, steps: int = 40, envs: int = 3):
    """A rollout as the environment loop gives it: inside an episode V(s'_t) is V(s_{t+1})."""
    rng = np.random.default_rng(seed)
    ends = rng.random((steps, envs))
    terminated, truncated = ends < 0.08, (ends >= 0.08) & (ends < 0.12)
    values = rng.normal(size=(steps, envs))
    next_values = rng.normal(size=(steps, envs))  # V of the final observations, and of the step after the rollout
    goes_on = ~(terminated | truncated)[:-1]
    next_values[:-1][goes_on] = values[1:][goes_on]
    return dict(rewards=rng.normal(size=(steps, envs)), values=values, next_values=next_values,
                terminated=terminated, truncated=truncated)


def reference_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    """The recursion written out copy by copy, step by step."""
    steps, envs = rewards.shape
    advantages = np.zeros((steps, envs))
    for n in range(envs):
        following = 0.0
        for t in reversed(range(steps)):
            bootstrap = 0.0 if terminated[t, n] else next_values[t, n]
            delta = rewards[t, n] + gamma * bootstrap - values[t, n]
            if terminated[t, n] or truncated[t, n]:
                following = 0.0
            following = delta + gamma * lam * following
            advantages[t, n] = following
    return advantages


def test_a_hand_computed_episode():
    rewards, values = np.ones((3, 1)), np.zeros((3, 1))
    next_values = np.full((3, 1), 10.0)
    terminated, truncated = np.array([[False], [False], [True]]), np.zeros((3, 1), bool)
    np.testing.assert_allclose(returns.discounted_returns(rewards, next_values, terminated, truncated, 0.5)[:, 0],
                               [1.75, 1.5, 1.0])
    # Truncated instead: the last step bootstraps from V(s') = 10.
    np.testing.assert_allclose(returns.discounted_returns(rewards, next_values, truncated, terminated, 0.5)[:, 0],
                               [1.75 + 1.25, 1.5 + 2.5, 1.0 + 5.0])
    # Cut by the rollout's end (neither flag): the same bootstrap.
    np.testing.assert_allclose(returns.discounted_returns(rewards, next_values, truncated, truncated, 0.5)[:, 0],
                               [3.0, 4.0, 6.0])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("lam", [0.0, 0.95, 1.0])
def test_gae_follows_the_recursion(seed, lam):
    r = random_rollout(seed)
    advantages, targets = returns.gae(**r, gamma=0.9, gae_lambda=lam)
    expected = reference_gae(**r, gamma=0.9, lam=lam)
    np.testing.assert_allclose(advantages, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(targets, expected + r["values"], rtol=1e-5, atol=1e-5)
    assert advantages.dtype == targets.dtype == np.float32


def test_lambda_one_is_monte_carlo_and_lambda_zero_the_td_error():
    r = random_rollout(3)
    _, targets = returns.gae(**r, gamma=0.9, gae_lambda=1.0)
    mc = returns.discounted_returns(r["rewards"], r["next_values"], r["terminated"], r["truncated"], gamma=0.9)
    np.testing.assert_allclose(targets, mc, rtol=1e-5, atol=1e-5)
    advantages, _ = returns.gae(**r, gamma=0.9, gae_lambda=0.0)
    td = r["rewards"] + 0.9 * np.where(r["terminated"], 0.0, r["next_values"]) - r["values"]
    np.testing.assert_allclose(advantages, td, rtol=1e-5, atol=1e-5)


def test_nothing_crosses_an_episode_boundary():
    r = random_rollout(4, steps=30, envs=1)
    r["terminated"][:] = False
    r["truncated"][:] = False
    r["terminated"][9, 0] = True  # the first episode ends at step 9
    before = returns.gae(**r, gamma=0.99, gae_lambda=0.95)[0][:10]
    r["rewards"][10:] += 100.0  # the next episode's rewards and values change...
    r["values"][10:] -= 50.0
    after = returns.gae(**r, gamma=0.99, gae_lambda=0.95)[0][:10]
    np.testing.assert_array_equal(before, after)  # ...and the first episode's advantages do not


@pytest.mark.parametrize("seed", [0, 5])
def test_n_step_returns_between_td_and_monte_carlo(seed):
    r = random_rollout(seed, steps=25)
    args = (r["rewards"], r["next_values"], r["terminated"], r["truncated"])
    one = returns.n_step_returns(*args, n=1, gamma=0.9)
    np.testing.assert_allclose(one, r["rewards"] + 0.9 * np.where(r["terminated"], 0.0, r["next_values"]),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(returns.n_step_returns(*args, n=25, gamma=0.9),
                               returns.discounted_returns(*args, gamma=0.9), rtol=1e-5, atol=1e-5)
    # n = 3 by hand for copy 0 at step 0, when no episode ends in steps 0-2.
    r["terminated"][:3] = False
    r["truncated"][:3] = False
    three = returns.n_step_returns(r["rewards"], r["next_values"], r["terminated"], r["truncated"], n=3, gamma=0.9)
    rw = r["rewards"][:, 0]
    assert three[0, 0] == pytest.approx(rw[0] + 0.9 * rw[1] + 0.81 * rw[2] + 0.729 * r["next_values"][2, 0], rel=1e-5)


def test_bad_rollouts_are_named():
    r = random_rollout(0)
    with pytest.raises(ValueError, match="shape"):
        returns.gae(r["rewards"], r["values"][:-1], r["next_values"], r["terminated"], r["truncated"])
    with pytest.raises(ValueError, match=r"\(steps, envs\)"):
        returns.discounted_returns(r["rewards"][:, 0], r["next_values"][:, 0], r["terminated"][:, 0],
                                   r["truncated"][:, 0])
    r["rewards"][3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        returns.gae(**r)
    with pytest.raises(ValueError, match="n must be"):
        returns.n_step_returns(np.ones((2, 1)), np.ones((2, 1)), np.zeros((2, 1), bool), np.zeros((2, 1), bool), n=0)
