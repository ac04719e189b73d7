"""Files a run reads back survive a kill at any moment, and a resume never restarts silently (issue 16, item 4):
atomic replacement, torn last lines, broken checkpoint pointers, logs kept, CUDA RNG states."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch
from omegaconf import OmegaConf

from r1gym.core import checkpoint as ckpt_mod
from r1gym.core.checkpoint import CheckpointError, latest_checkpoint, resumable_checkpoint, rng_state, set_rng_state
from r1gym.core.jsonl import atomic_write_text, read_appended_jsonl
from r1gym.core.stages import run_stage


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    atomic_write_text(path, "a: 1\n")
    assert path.read_text() == "a: 1\n"

    def killed(src, dst):  # the process dies between writing the new file and renaming it into place
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(path, "a: 2\n" * 1000)
    assert path.read_text() == "a: 1\n"  # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]  # and no temporary left behind


def test_a_torn_last_line_costs_that_line_only(tmp_path, caplog):
    path = tmp_path / "datagen_progress.jsonl"
    path.write_text('{"indices": [0, 1]}\n{"indices": [2, 3]}\n{"indices": [4, ')
    with caplog.at_level(logging.WARNING):
        assert read_appended_jsonl(path) == [{"indices": [0, 1]}, {"indices": [2, 3]}]
    assert "datagen_progress.jsonl:3" in caplog.text
    with path.open("a") as f:  # the resumed run appends: its line must not glue onto the fragment
        f.write('{"indices": [4, 5]}\n')
    assert [r["indices"] for r in read_appended_jsonl(path)] == [[0, 1], [2, 3], [4, 5]]


def test_a_whole_last_record_without_its_newline_is_kept_and_ended(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}')
    assert read_appended_jsonl(path) == [{"a": 1}, {"a": 2}]
    assert path.read_text() == '{"a": 1}\n{"a": 2}\n'


def test_damage_in_the_middle_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"a": 1}\n{"a": \n{"a": 3}\n')
    with pytest.raises(ValueError, match=r"p\.jsonl:2: invalid JSON in the middle"):
        read_appended_jsonl(path)
    assert path.read_text() == '{"a": 1}\n{"a": \n{"a": 3}\n'  # nothing cut


def _fake_checkpoint(run_dir, step):
    folder = run_dir / "checkpoints" / f"step_{step:06d}"
    folder.mkdir(parents=True)
    torch.save({"step": step}, folder / "trainer_state.pt")
    return folder


def test_latest_checkpoint_raises_on_a_broken_pointer_and_names_the_way_out(tmp_path):
    assert latest_checkpoint(tmp_path) is None  # a run with no checkpoint yet
    _fake_checkpoint(tmp_path, 2)
    with pytest.raises(CheckpointError, match="no 'latest' pointer.*step_000002"):
        latest_checkpoint(tmp_path)
    pointer = tmp_path / "checkpoints" / "latest"
    pointer.write_text("step_000004")  # names a checkpoint that was never completed
    with pytest.raises(CheckpointError, match="'step_000004', which has no trainer_state.pt.*echo step_000002"):
        latest_checkpoint(tmp_path)
    pointer.write_text("")
    with pytest.raises(CheckpointError, match="is empty"):
        latest_checkpoint(tmp_path)
    pointer.write_text("step_000002\n")
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "step_000002"


def test_an_unreadable_trainer_state_is_a_checkpoint_error(tmp_path):
    folder = _fake_checkpoint(tmp_path, 3)
    (folder / "trainer_state.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="trainer_state.pt cannot be read"):
        ckpt_mod.load_trainer_state(folder)


def test_resume_of_a_run_that_logged_steps_but_saved_nothing_is_refused(tmp_path):
    assert resumable_checkpoint(tmp_path) is None  # nothing logged: starting at 0 loses nothing
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n{"st')
    with pytest.raises(CheckpointError, match="logged steps up to 2 .* saved no checkpoint"):
        resumable_checkpoint(tmp_path)


@pytest.mark.parametrize("kind", ["grpo", "sft"])
def test_run_stage_checks_the_checkpoint_before_any_model_loads(tmp_path, kind):
    """The trainer is never built: the config below has no model at all, so reaching it would fail otherwise."""
    _fake_checkpoint(tmp_path, 2)
    (tmp_path / "checkpoints" / "latest").write_text("step_000009")
    cfg = OmegaConf.create({"resume": str(tmp_path), "stage": {"kind": kind, "name": kind}})
    with pytest.raises(CheckpointError, match="step_000009"):
        run_stage(cfg, tmp_path)


def test_jsonl_logger_keeps_what_a_resume_keeps_and_sets_old_runs_aside(tmp_path):
    from r1gym.plugins.loggers import JsonlLogger

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"step": s, "loss": s / 10}) + "\n" for s in (1, 2, 3)) + '{"step": 4, "lo')
    logger = JsonlLogger(tmp_path)
    logger.start(tmp_path, {}, total_steps=10, start_step=2)  # resumed from step 2: steps 3 and 4 will run again
    assert [json.loads(ln)["step"] for ln in metrics.read_text().splitlines()] == [1, 2]
    logger.log_metrics(3, {"loss": 0.3})
    assert [json.loads(ln)["step"] for ln in metrics.read_text().splitlines()] == [1, 2, 3]

    logger.start(tmp_path, {}, total_steps=10, start_step=0)  # a new run in the same folder
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("metrics.jsonl.replaced-")]
    assert len(aside) == 1 and [json.loads(ln)["step"] for ln in aside[0].read_text().splitlines()] == [1, 2, 3]
    assert not metrics.exists()


def test_cuda_rng_states_round_trip_where_the_process_sees_as_many_gpus(monkeypatch):
    """On this CPU machine the CUDA calls are test doubles recording what is saved and restored; the real
    round trip on a GPU is tests/test_gpu.py::test_cuda_rng_state_is_checkpointed."""
    saved = [torch.tensor([1, 2, 3], dtype=torch.uint8), torch.tensor([4, 5, 6], dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: saved)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    state = rng_state()
    assert state["cuda"] is saved
    set_rng_state(state)
    assert restored == [saved]


def test_cuda_rng_states_from_another_machine_are_reported_and_cpu_states_still_restored(caplog):
    torch.manual_seed(123)
    state = {**rng_state(), "cuda": [torch.zeros(16, dtype=torch.uint8)]}
    expected = torch.rand(3)
    torch.manual_seed(999)
    with caplog.at_level(logging.WARNING):
        set_rng_state(state)
    assert torch.equal(torch.rand(3), expected)
    assert "RNG states of 1 GPU(s)" in caplog.text
