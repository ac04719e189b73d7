"""A run you can watch and read (issue 17, item 7): a plain line per step when standard error is not a terminal,
wide tables in logs, sampled completions as tables in TensorBoard and W&B, ``logger=wandb``, bounded
``log_samples``."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from r1gym.core.config import compose
from r1gym.plugins.loggers import ConsoleLogger, markdown_table, sample_table

METRICS = {"reward/mean": 0.5, "accuracy": 0.25, "completion/len_mean": 27.5, "kl": 0.0125, "entropy": 0.4,
           "clip_frac": 0.0, "unscorable/count": 1.0, "time/generate": 2.0, "time/forward_backward": 3.0,
           "time/weight_sync": 0.0001, "time/step": 5.25}


def test_without_a_terminal_each_step_is_one_plain_line_written_as_it_ends(capsys, tmp_path):
    logger = ConsoleLogger(tmp_path)
    logger.start(tmp_path, {"stage": {"name": "r1_zero"}}, total_steps=4, start_step=1)  # resumed after step 1
    assert logger.progress is None, "captured stderr is not a terminal: no progress bar"
    assert f"run folder: {tmp_path} (resuming at step 1)" in capsys.readouterr().err
    logger.log_metrics(2, METRICS)
    line = capsys.readouterr().err  # before the run ends: the line is there already
    assert line.count("\n") == 1, line
    assert line.startswith("[r1_zero] step 2/4  reward=0.5  acc=0.25  kl=0.0125  len=27.5  entropy=0.4  clip=0  "
                           "unscorable=1  5.25 s/step (generate 2.00, forward_backward 3.00)  elapsed 0:00  ETA 0:00")
    assert "weight_sync" not in line  # phases under 5 ms are left out
    logger.log_metrics(3, {"loss": 1.5})  # an SFT step: what it has, nothing invented
    assert capsys.readouterr().err.startswith("[r1_zero] step 3/4  loss=1.5  elapsed")
    logger.finish({"status": "finished", "run_dir": str(tmp_path)})
    assert capsys.readouterr().err.strip() == f"run finished: {tmp_path}"


def test_a_terminal_gets_the_progress_bar_and_plain_can_be_asked_for(monkeypatch, tmp_path):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: treat the output as a terminal
    bar = ConsoleLogger(tmp_path)
    bar.start(tmp_path, {}, total_steps=2, start_step=0)
    assert bar.plain is False and bar.progress is not None
    bar.log_metrics(1, METRICS)
    assert "reward=0.5" in bar.progress.tasks[0].description
    bar.finish({"status": "finished"})
    forced = ConsoleLogger(tmp_path, plain=True)
    forced.start(tmp_path, {}, total_steps=2, start_step=0)
    assert forced.progress is None
    forced.finish({"status": "finished"})


def test_tables_are_not_squeezed_without_a_terminal(capsys, monkeypatch):
    from rich.table import Table

    from r1gym.core.loggers import WIDE_COLUMNS, wide_console

    monkeypatch.delenv("COLUMNS", raising=False)
    table = Table(title="pass@1 over k=4 samples, cons@4 by majority vote")
    for col in ("dataset", "problems", "pass@1", "cons@4", "unscorable samples", "mean tokens", "seconds"):
        table.add_column(col)
    table.add_row("Arithmetic (eval split)", "64", "0.355", "0.391", "0", "26", "41")
    console = wide_console()
    assert console.width == WIDE_COLUMNS
    console.print(table)
    out = capsys.readouterr().out
    assert any("Arithmetic (eval split)" in ln and "unscorable samples" not in ln for ln in out.splitlines()), out
    assert "…" not in out
    monkeypatch.setenv("COLUMNS", "120")  # the user's own width wins
    assert wide_console().width == 120


def test_sample_table_keeps_unscorable_apart_from_zero_and_bounds_rows():
    samples = [{"group": i // 2, "completion": f"c{i}", "reward": 0.5 * i, "advantage": 1.0 - i,
                "rewards": {"accuracy": 1.0, "format": None if i == 1 else 0.0}, "truncated": i == 2} for i in range(5)]
    columns, rows = sample_table(7, samples, limit=3)
    assert columns == ["step", "group", "completion", "reward", "accuracy", "format", "advantage", "truncated"]
    assert rows == [[7, 0, "c0", 0.0, 1.0, 0.0, 1.0, False], [7, 0, "c1", 0.5, 1.0, None, 0.0, False],
                    [7, 1, "c2", 1.0, 1.0, 0.0, -1.0, True]]
    columns, rows = sample_table(7, [{**samples[0], "prompt": "2+2?", "reward": math.nan}], limit=16)
    assert columns[2] == "prompt" and rows[0][2] == "2+2?" and rows[0][4] is None  # NaN reward: an empty cell
    md = markdown_table(["a", "b"], [["x|y", "l1\nl2"], ["z" * 10, None]], max_chars=5)
    assert md == "| a | b |\n|---|---|\n| x\\|y | l1<br>l2 |\n| zzzzz… |  |\n"


def test_log_samples_is_bounded_by_default_and_logger_wandb_composes():
    cfg = compose(["logger=wandb"])
    assert cfg.trainer.log_samples == 16
    assert list(cfg.logger.names) == ["console", "jsonl", "wandb"]
    assert cfg.logger.params.wandb.sample_rows == 16
    assert compose(["trainer=ddp"]).trainer.log_samples == 16


def _tiny_run(tiny_model_dir, run_dir, *loggers, extra=()):
    from r1gym.core.grpo import GRPOTrainer

    cfg = compose([
        f"model.name_or_path={tiny_model_dir}", "env=arithmetic", "algo.prompts_per_step=5", "algo.group_size=4",
        "algo.micro_batch_size=4", "rollout.max_new_tokens=6", "trainer.max_steps=2", "trainer.save_every=100",
        "trainer.threads=1", "eval.at_start=false", "eval.at_end=false", f"run_dir={run_dir}",
        f"logger.names=[{','.join(loggers)}]", *extra,
    ])
    GRPOTrainer(cfg, run_dir).train()
    return [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_real_run_writes_lines_samples_and_tensorboard_tables(tiny_model_dir, tmp_path, capsys):
    pytest.importorskip("tensorboard", reason="the tensorboard logger needs the extra: pip install 'r1gym[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    metrics = _tiny_run(tiny_model_dir, tmp_path, "console", "jsonl", "tensorboard",
                        extra=["+logger.params.tensorboard.sample_rows=3"])
    err = capsys.readouterr().err
    for m in metrics:
        assert f"[r1_zero] step {m['step']}/2  reward={m['reward/mean']:.3g}  acc=" in err, err
    samples = [json.loads(ln) for ln in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == [1] * 16 + [2] * 16  # 20 completions a step, 16 kept by default

    acc = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    assert [(e.step, pytest.approx(e.value)) for e in acc.Scalars("reward/mean")] == \
        [(m["step"], m["reward/mean"]) for m in metrics]
    texts = acc.Tensors("samples/text_summary")
    assert [e.step for e in texts] == [1, 2]
    table = texts[-1].tensor_proto.string_val[0].decode()
    lines = table.splitlines()
    assert lines[0] == "| step | group | prompt | completion | reward | arithmetic | format | advantage | truncated |"
    assert all(s["prompt"] for s in samples)  # the rendered prompt the policy saw, beside its completion
    assert len(lines) == 2 + 3  # header, rule and sample_rows rows
    first = samples[16]
    assert lines[2].startswith(f"| 2 | {first['group']} | ")


def test_wandb_offline_gets_metrics_and_sample_tables_and_resumes_the_same_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the wandb logger needs the extra: pip install 'r1gym[wandb]'")
    from r1gym.plugins.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    samples = [{"group": i // 4, "completion": f"<answer> {i} </answer>", "reward": float(i % 2),
                "rewards": {"arithmetic": float(i % 2), "format": 1.0}, "advantage": 0.5, "truncated": False}
               for i in range(20)]
    logger = WandbLogger(tmp_path, sample_rows=5)
    logger.start(tmp_path, {"algo": {"beta": 0.0}}, total_steps=4, start_step=0)
    logger.log_metrics(1, {"reward/mean": 0.625, "loss": 0.1})
    logger.log_samples(1, samples)
    logger.log_eval(1, {"eval/pass@1": 0.375})
    logger.finish({"status": "finished"})

    run_id = (tmp_path / "wandb_run_id").read_text().strip()
    (run_folder,) = (tmp_path / "wandb").glob(f"offline-run-*-{run_id}")
    (table_file,) = (run_folder / "files" / "media" / "table").glob("samples_1_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["step", "group", "completion", "reward", "arithmetic", "format", "advantage", "truncated"]
    assert table["data"] == [[1, i // 4, f"<answer> {i} </answer>", float(i % 2), float(i % 2), 1.0, 0.5, False]
                             for i in range(5)]
    log_file, deadline = run_folder / f"run-{run_id}.wandb", time.monotonic() + 30
    while b"eval/pass@1" not in log_file.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.1)  # the wandb-core process writes the run's log; finish() may return before it is flushed
    history = log_file.read_bytes()
    assert b"reward/mean" in history and b"0.625" in history and b"eval/pass@1" in history

    again = WandbLogger(tmp_path)
    again.start(tmp_path, {}, total_steps=4, start_step=1)  # a resumed run: the same W&B run
    again.finish({"status": "finished"})
    assert {p.name.rsplit("-", 1)[1] for p in (tmp_path / "wandb").glob("offline-run-*")} == {run_id}
    assert (tmp_path / "wandb_run_id").read_text().strip() == run_id


def test_the_eval_table_in_a_log_file_is_whole(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """``r1gym eval`` (and a pipeline's eval stage) without a terminal: the dataset's name stays on one line."""
    from r1gym.core.stages import run_stage

    monkeypatch.delenv("COLUMNS", raising=False)
    run_stage(compose(["stage=eval", f"model.name_or_path={tiny_model_dir}", "env=arithmetic", "rollout.max_new_tokens=6",
                       "trainer.threads=1", "logger=jsonl_only", "eval.num_problems=2", f"run_dir={tmp_path}"]), tmp_path)
    out = capsys.readouterr().out
    (name,) = json.loads((tmp_path / "eval.json").read_text())["datasets"]
    assert "(eval split)" in name and any(name in ln and "…" not in ln for ln in out.splitlines()), out


def test_a_misspelled_wandb_parameter_names_the_right_one():
    pytest.importorskip("wandb", reason="the wandb logger needs the extra: pip install 'r1gym[wandb]'")
    from r1gym.core.registry import UnknownNameError
    from r1gym.plugins.loggers import WandbLogger

    with pytest.raises(UnknownNameError, match="unknown wandb logger parameter 'sample_rowz'.*Did you mean 'sample_rows'"):
        WandbLogger(Path("."), sample_rowz=3)
    with pytest.raises(UnknownNameError, match="'id'"):  # r1gym keeps the id itself (wandb_run_id)
        WandbLogger(Path("."), id="abc")
    assert WandbLogger(Path("."), entity="team", tags=["a"]).init_kwargs == {"entity": "team", "tags": ["a"]}
