"""``r1gym pipeline``: every pipeline file's stages compose, inputs are wired to earlier outputs, and the whole
R1 recipe runs with a tiny random model -- killed in the middle of a stage and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from r1gym.core.config import compose
from r1gym.core.pipeline import _wire, load_pipeline

CONF = Path(__file__).resolve().parents[1] / "conf" / "pipeline"
DATA = Path(__file__).parent / "data"
PIPELINES = sorted(p.stem for p in CONF.glob("*.yaml"))


def _compose_stage(spec: dict, st: dict) -> object:
    dummy = {k: (["x.jsonl"] if isinstance(v, list) else "/tmp/x") for k, v in (st.get("inputs") or {}).items()}
    wired = [f"{k}=[{','.join(v)}]" if isinstance(v, list) else f"{k}={v}" for k, v in dummy.items()]
    return compose([f"stage={st['stage']}", *spec.get("common", []), *st.get("overrides", []), *wired])


@pytest.mark.parametrize("name", [*PIPELINES, str(DATA / "pipeline_tiny_random.yaml")])
def test_every_stage_of_every_pipeline_composes(name):
    spec = load_pipeline(name)
    for st in spec["stages"]:
        cfg = _compose_stage(spec, st)
        assert cfg.stage.name == st["stage"] and cfg.stage.kind in ("grpo", "sft", "sample", "eval")
    assert set((spec.get("eval") or {}).get("after", [])) <= {s["name"] for s in spec["stages"]}


def test_r1_lists_the_papers_stages_in_order():
    assert [s["stage"] for s in load_pipeline("r1")["stages"]] == [
        "r1_zero", "cold_start", "reasoning_rl", "rejection_sampling", "sft", "all_scenario_rl", "distill"]


def test_inputs_must_come_from_finished_stages():
    manifest = {"stages": {"a": {"status": "finished", "outputs": {"checkpoint": "/c", "data": None}},
                           "b": {"status": "failed"}}}
    assert _wire("a.checkpoint", manifest, "z") == "/c" and _wire(["a.checkpoint"], manifest, "z") == ["/c"]
    with pytest.raises(ValueError, match="stage 'b' has not finished in this run \\(status: failed\\)"):
        _wire("b.checkpoint", manifest, "z")
    with pytest.raises(ValueError, match="'a' has no output 'data' \\(it has: checkpoint\\)"):
        _wire("a.data", manifest, "z")
    with pytest.raises(ValueError, match="known ones are r1, r1_tiny"):
        load_pipeline("r2")


def _run(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "r1gym.core.cli", "pipeline", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, **kw)


def test_the_whole_pipeline_runs_and_resumes_a_stage_killed_midway(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    args = [f"pipeline={DATA / 'pipeline_tiny_random.yaml'}", f"pipeline.run_dir={run}", "model=hf",
            f"model.name_or_path={tiny_model_dir}"]
    first = _run(args)
    ckpt = run / "3-reasoning_rl" / "checkpoints" / "step_000003"
    deadline = time.monotonic() + 600
    while not ckpt.exists():  # kill it while reasoning_rl (30 steps) is under way
        assert first.poll() is None, first.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "reasoning_rl never reached its third checkpoint"
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    manifest = json.loads((run / "pipeline.json").read_text())
    assert [manifest["stages"][s]["status"] for s in ("r1_zero", "cold_start", "reasoning_rl")] == [
        "finished", "finished", "running"]

    second = _run(args)
    out = second.communicate(timeout=900)[0].decode()
    assert second.returncode == 0, out[-3000:]
    manifest = json.loads((run / "pipeline.json").read_text())
    stages = manifest["stages"]
    assert list(stages) == ["r1_zero", "cold_start", "reasoning_rl", "rejection_sampling", "sft",
                            "all_scenario_rl", "distill"]
    assert all(s["status"] == "finished" for s in stages.values())
    assert not stages["cold_start"].get("resumed") and stages["reasoning_rl"]["resumed"] is True
    assert stages["reasoning_rl"]["outputs"]["checkpoint"].endswith("step_000030")
    steps = [json.loads(line)["step"] for line in (run / "3-reasoning_rl" / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 30 and set(steps) == set(range(1, 31))
    assert steps.count(1) == steps.count(2) == steps.count(3) == 1  # resumed after step 3, not from scratch
    # inputs were wired: each stage's saved config points at the previous stage's outputs
    cfg = (run / "3-reasoning_rl" / "config.yaml").read_text()
    assert stages["cold_start"]["outputs"]["checkpoint"] in cfg
    assert stages["rejection_sampling"]["outputs"]["data"] in (run / "5-sft" / "config.yaml").read_text()
    stats = json.loads((run / "4-rejection_sampling" / "data_stats.json").read_text())
    assert stats["records"] == stats["reasoning"] + stats["non_reasoning"] and stats["non_reasoning"] == 6
    assert "eval" in stages["sft"] and stages["sft"]["eval"]["datasets"]
    report = (run / "report.md").read_text()
    assert "## Evaluation after each stage" in report and "## Data generation: kept and dropped" in report
    assert (run / "plots" / "1-r1_zero.png").stat().st_size > 1000
