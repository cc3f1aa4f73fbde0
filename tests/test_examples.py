"""Every script in examples/ runs end to end with --quick (real environments, tiny budgets).

The scripts run two at a time in fresh processes (one per core), started once for
the module; each test then checks one script's exit status, what it printed and
what it wrote. Whether the full-budget runs reach their returns is a benchmark:
benchmarks/examples.py.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# script -> (a line it must print, a file it must write under --out)
EXPECTED = {
    "actor_critic_cartpole": ("the loaded agent acts the same: True", "actor_critic_cartpole.keras"),
    "ppo_lunarlander": ("the loaded agent acts the same: True", "ppo_lunar.keras"),
    "sac_pendulum": ("the loaded agent acts the same", "sac_pendulum.keras"),
    "sac_cartpole": ("the loaded agent acts the same", "sac_cartpole.keras"),
    "dqn_lunarlander": ("the loaded agent acts the same", "dqn_lunar.keras"),
    "dqn_cartpole": ("deterministic evaluation:", "dqn_cartpole.keras"),
    "td3_ddpg": ("deterministic evaluation", None),
    "tune_sac": ("best agent on fresh episodes:", None),
}


def test_every_example_is_checked():
    assert sorted(p.stem for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    def run(name: str) -> tuple[subprocess.CompletedProcess, Path]:
        out = tmp_path_factory.mktemp(name)
        proc = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--quick", "--out", str(out)],
                              capture_output=True, text=True, timeout=600,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        return proc, out

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        return dict(zip(EXPECTED, pool.map(run, EXPECTED)))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_quick(runs, name):
    proc, out = runs[name]
    assert proc.returncode == 0, proc.stderr[-3000:]
    line, written = EXPECTED[name]
    assert line in proc.stdout, proc.stdout[-2000:]
    # The evaluation each script prints is a finite number.
    evaluations = re.findall(r"(?:evaluation:?|episodes:) (-?\d+\.\d+) ± (\d+\.\d+)", proc.stdout)
    assert evaluations, proc.stdout[-2000:]
    if written:
        assert (out / written).is_file()
