"""End to end: GRPO on a tiny random model through the real CLI, killed with SIGKILL and resumed.

The resumed run must continue the *same* trajectory: with a fixed seed on the CPU, the metrics of the
steps after the resume equal those of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TESTS

pytestmark = pytest.mark.slow


def _cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["R1GYM_PLUGINS"] = "varied_reward"  # tests/plugins/varied_reward.py: a reward that varies on any text
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS / "plugins"), env.get("PYTHONPATH", "")])
    env["HF_HUB_OFFLINE"] = "1"
    return env


def _overrides(model_dir: Path, run_dir: Path, steps: int = 4) -> list[str]:
    return [
        f"model.name_or_path={model_dir}", "env=arithmetic",
        # Hydra adds a new key with "+": the accuracy reward stays registered but weighs nothing here
        "+env.kwargs.rewards.char_variety=1.0", "env.kwargs.rewards.arithmetic=0.0",
        "algo.prompts_per_step=2", "algo.group_size=3", "algo.micro_batch_size=4", "algo.optim.lr=1e-2",
        "rollout.max_new_tokens=8", "rollout.max_episode_tokens=8",
        f"trainer.max_steps={steps}", "trainer.save_every=2", "trainer.threads=1",
        "eval.at_start=false", "eval.at_end=false", "logger=jsonl_only", f"run_dir={run_dir}",
    ]


def _train(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "r1gym.core.cli", "train", *args], env=_cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _metrics(run_dir: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: {k: v for k, v in r.items() if not k.startswith("time/")} for r in rows}


def test_grpo_kill_and_resume_matches_uninterrupted_run(tiny_model_dir, tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    proc = _train(_overrides(tiny_model_dir, full))
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    reference = _metrics(full)
    assert sorted(reference) == [1, 2, 3, 4]
    # the run really learns something: non-zero loss and gradients, and the weights move
    assert any(abs(m["loss"]) > 0 for m in reference.values())
    assert all(m["grad_norm"] > 0 for m in reference.values())
    assert (full / "checkpoints" / "step_000004" / "model.safetensors").exists()
    assert json.loads((full / "manifest.json").read_text())["status"] == "finished"

    proc = _train(_overrides(tiny_model_dir, killed))
    latest = killed / "checkpoints" / "latest"
    deadline = time.time() + 600
    while not (latest.exists() and latest.read_text().strip() == "step_000002"):
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "no checkpoint at step 2"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "manifest.json").exists()

    proc = _train([f"resume={killed}"])
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    resumed = _metrics(killed)
    assert sorted(resumed) == [1, 2, 3, 4]
    for step in (3, 4):
        assert resumed[step].keys() == reference[step].keys()
        for key, value in reference[step].items():
            assert resumed[step][key] == pytest.approx(value, rel=1e-5, abs=1e-7), (step, key)
