"""``r1gym pipeline``: every pipeline option's stages compose, a pipeline file is checked by its schema when Hydra
composes it, plugins ship pipelines and stages, inputs are wired to earlier outputs, and the whole R1 recipe
runs with a tiny random model -- killed in the middle of a stage and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from r1gym.core.cli import main
from r1gym.core.config import compose
from r1gym.core.pipeline import _wire, load_pipeline

CONF = Path(__file__).resolve().parents[1] / "conf" / "pipeline"
DATA = Path(__file__).parent / "data"
TEST_CONF = DATA / "conf"  # its pipeline/ holds the tiny-random-model pipeline: -cd tests/data/conf
PIPELINES = [(p.stem, ()) for p in sorted(CONF.glob("*.yaml"))] + [("tiny_random", (TEST_CONF.as_uri(),))]


def _compose_stage(spec: dict, st: dict, config_dirs=()) -> object:
    dummy = {k: (["x.jsonl"] if isinstance(v, list) else "/tmp/x") for k, v in (st.get("inputs") or {}).items()}
    wired = [f"{k}=[{','.join(v)}]" if isinstance(v, list) else f"{k}={v}" for k, v in dummy.items()]
    return compose([f"stage={st['stage']}", *spec["common"], *st["overrides"], *wired], config_dirs=config_dirs)


@pytest.mark.parametrize(("name", "config_dirs"), PIPELINES, ids=[n for n, _ in PIPELINES])
def test_every_stage_of_every_pipeline_composes(name, config_dirs):
    spec = load_pipeline(name, config_dirs=config_dirs)
    for st in spec["stages"]:
        cfg = _compose_stage(spec, st, config_dirs)
        assert cfg.stage.name == st["stage"] and cfg.stage.kind in ("grpo", "sft", "sample", "eval")
    assert set(spec["eval"]["after"]) <= {s["name"] for s in spec["stages"]}


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



def test_an_unknown_pipeline_lists_the_known_ones():
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match=r"Could not find 'pipeline/r2'") as err:
        load_pipeline("r2")
    assert "Available options in 'pipeline':\n\tr1\n\tr1_tiny\n" in str(err.value)


def _plugin_host(folder: Path):
    """A plugin host whose one plugin contributes ``folder`` as a config folder (as an installed plugin would)."""
    from r1gym.core.hookspecs import hookimpl
    from r1gym.core.plugins import load_plugins

    class ConfigFolder:
        @hookimpl
        def r1gym_register_config_dirs(self, register):
            register(folder.as_uri())

    return load_plugins(autoload=False, extra=[("shipper", ConfigFolder())])


def test_a_typo_in_a_pipeline_file_fails_when_hydra_composes_it(tmp_path, capsys):
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "typo.yaml").write_text("name: typo\nstages:\n  - {name: a, stag: r1_zero}\n")
    with pytest.raises(Exception, match=r"Key 'stag' not in 'PipelineStageConfig'"):
        load_pipeline("typo", config_dirs=[tmp_path.as_uri()])
    run = tmp_path / "run"
    assert main(["pipeline", "-cd", str(tmp_path), "pipeline=typo", f"pipeline.run_dir={run}"]) == 2
    assert "Key 'stag' not in 'PipelineStageConfig'" in capsys.readouterr().err
    assert not run.exists()  # nothing ran: it failed at compose time


def test_a_stage_that_is_no_stage_option_is_named(tmp_path):
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "p.yaml").write_text("name: p\nstages: [{name: a, stage: r1_zeroo}]\n")
    with pytest.raises(ValueError, match=r"stage 'a' runs stage=r1_zeroo, which is not an option .*r1_zero"):
        load_pipeline("p", config_dirs=[tmp_path.as_uri()])


def test_a_plugin_ships_a_pipeline_and_a_stage(tmp_path, capsys):
    """Its config folder is on Hydra's search path: ``pipeline=its_pipeline`` and ``stage=its_stage`` resolve,
    in ``r1gym pipeline`` (Hydra's application) and in each stage's own composition."""
    for group in ("pipeline", "stage"):
        (tmp_path / group).mkdir()
    (tmp_path / "stage" / "shipped_sft.yaml").write_text("# @package _global_\nstage: {name: shipped_sft, kind: sft}\n"
                                                         "sft: {epochs: 3.0}\n")
    (tmp_path / "pipeline" / "shipped.yaml").write_text(
        "name: shipped\ncommon: [env=arithmetic]\nstages:\n  - {name: zero, stage: r1_zero}\n"
        "  - {name: tune, stage: shipped_sft, inputs: {model.name_or_path: zero.checkpoint}}\n")
    host = _plugin_host(tmp_path)
    spec = load_pipeline("shipped", config_dirs=host.config_dirs)
    assert [s["stage"] for s in spec["stages"]] == ["r1_zero", "shipped_sft"]
    cfg = _compose_stage(spec, spec["stages"][1], host.config_dirs)
    assert (cfg.stage.kind, cfg.sft.epochs, cfg.env.id) == ("sft", 3.0, "r1gym/Arithmetic-v0")
    assert main(["pipeline", "--cfg", "job", "pipeline=shipped"], host=host) == 0
    assert "name: shipped" in capsys.readouterr().out
    assert main(["pipeline", "--cfg", "job", "pipeline=shipped"], host=_plugin_host(tmp_path / "elsewhere")) == 2
    assert "Could not find 'pipeline/shipped'" in capsys.readouterr().err  # found through the plugin alone


def test_stages_of_a_pipeline_from_a_config_dir_compose_on_the_apps_search_path(tiny_model_dir, tmp_path):
    """``-cd DIR`` with DIR/pipeline/p.yaml running DIR/stage/quick_eval.yaml: the stage's own composition
    finds the stage option too (a real one-problem evaluation of the tiny model runs)."""
    conf = tmp_path / "conf"
    for group in ("pipeline", "stage"):
        (conf / group).mkdir(parents=True)
    (conf / "stage" / "quick_eval.yaml").write_text(
        "# @package _global_\nstage: {name: quick_eval, kind: eval}\neval: {num_problems: 1, samples: 1, greedy: true}\n")
    (conf / "pipeline" / "p.yaml").write_text("name: p\nstages: [{name: check, stage: quick_eval}]\n")
    run = tmp_path / "run"
    assert main(["pipeline", "-cd", str(conf), "pipeline=p", f"pipeline.run_dir={run}", "model=hf",
                 f"model.name_or_path={tiny_model_dir}", "env=arithmetic", "rollout.max_new_tokens=2",
                 "trainer.threads=1", "logger=jsonl_only"]) == 0
    manifest = json.loads((run / "pipeline.json").read_text())
    assert manifest["stages"]["check"]["status"] == "finished"
    results = json.loads((run / "1-check" / "eval.json").read_text())
    assert [d["problems"] for d in results["datasets"].values()] == [1]
    assert (run / ".hydra" / "overrides.yaml").is_file()  # the pipeline's folder is Hydra's output folder


def test_the_older_spelling_of_a_stage_subset_still_works(capsys):
    assert main(["pipeline", "--cfg", "job", "pipeline=r1_tiny", "pipeline.stages=[sft,distill]"]) == 0
    out = capsys.readouterr().out
    assert "only:\n  - sft\n  - distill" in out


def _run(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "r1gym.core.cli", "pipeline", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, **kw)


def test_the_whole_pipeline_runs_and_resumes_a_stage_killed_midway(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    args = ["-cd", str(TEST_CONF), "pipeline=tiny_random", f"pipeline.run_dir={run}", "model=hf",
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


def test_every_stage_is_checked_before_the_first_one_runs(tmp_path, capsys):
    """A misspelled reward parameter in the LAST stage, and a value left ??? in the first, are both reported in
    one error before any stage runs: no manifest, no stage folder. Inputs from stages not run yet are stand-ins
    (the last stage's model comes from the first); an input no stage of this run writes fails up front too."""
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "p.yaml").write_text(
        "name: p\ncommon: [env=math]\nstages:\n  - {name: zero, stage: r1_zero}\n"
        "  - {name: last, stage: reasoning_rl, inputs: {model.name_or_path: zero.checkpoint},\n"
        "     overrides: ['+env.kwargs.rewards.math_accuracy.timeuot=3']}\n")
    run = tmp_path / "run"
    assert main(["pipeline", "-cd", str(tmp_path), "pipeline=p", f"pipeline.run_dir={run}", "model=hf"]) == 2
    err = capsys.readouterr().err
    assert "the config has 2 problem(s)" in err
    assert "stage zero: model.name_or_path: left unset (???)" in err  # the last stage's comes from zero
    assert "stage last: env.kwargs.rewards.math_accuracy.timeuot: reward 'math_accuracy' takes no parameter" in err
    assert "Did you mean 'timeout'?" in err
    assert sorted(p.name for p in run.iterdir()) == [".hydra", "r1gym.log"]  # Hydra's record of the pipeline alone
    assert main(["pipeline", "-cd", str(tmp_path), "pipeline=p", f"pipeline.run_dir={run}", "pipeline.only=[last]"]) == 2
    assert "stage 'last' needs 'zero.checkpoint', but stage 'zero' has not finished" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == [".hydra", "r1gym.log"]
