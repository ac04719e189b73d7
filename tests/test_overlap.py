"""Generation in a second process (``rollout=hf_process``) and overlapped with training (``rollout.overlap``):
process separation alone changes nothing, the overlap records and corrects a policy lag of one, in-process
backends are refused, and a dead or stuck child is an error, not a hang."""

from __future__ import annotations

import json
import math
import os
import signal
import time

import pytest
import torch

from r1gym.core.config import compose
from r1gym.core.grpo import GRPOTrainer
from tests.conftest import TESTS


@pytest.fixture()
def test_plugins(monkeypatch):
    """tests/plugins/varied_reward.py (char_variety: rewards that differ within a group, so the loss moves)."""
    import importlib

    from r1gym.core.plugins import load_plugins

    monkeypatch.syspath_prepend(str(TESTS / "plugins"))
    return load_plugins(autoload=False, extra=[("varied_reward", importlib.import_module("varied_reward"))])


def _cfg(model_dir, run_dir, *extra):
    # matmul=torch: auto picks the fp32 route by timing, and two runs may pick differently (1e-7 apart)
    return compose([
        f"model.name_or_path={model_dir}", "env=arithmetic", "+env.kwargs.rewards.char_variety=1.0",
        "algo.prompts_per_step=2", "algo.group_size=4", "algo.micro_batch_size=4", "algo.optim.lr=1e-2",
        "rollout.max_new_tokens=6", "trainer.max_steps=3", "trainer.save_every=100", "trainer.threads=1",
        "trainer.matmul=torch", "trainer.log_samples=-1", "eval.at_start=false", "eval.at_end=false", "logger=jsonl_only",
        f"run_dir={run_dir}", *extra,
    ])


def _run(cfg, run_dir, host):
    trainer = GRPOTrainer(cfg, run_dir, host=host)
    trainer.train()
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    return trainer, metrics, samples


@pytest.mark.slow
def test_a_second_process_alone_changes_nothing(test_plugins, tiny_model_dir, tmp_path):
    """Same seed, same threads: hf_process samples the same tokens and trains to the same losses as hf."""
    base, m_hf, s_hf = _run(_cfg(tiny_model_dir, tmp_path / "hf"), tmp_path / "hf", test_plugins)
    proc, m_proc, s_proc = _run(_cfg(tiny_model_dir, tmp_path / "proc", "rollout=hf_process"), tmp_path / "proc",
                                test_plugins)
    assert type(base.backend).__name__ == "HFBackend" and base.ahead is None  # option off: the in-process loop
    assert type(proc.backend).__name__ == "HFProcessBackend" and proc.ahead is None
    assert proc.is_mode == base.is_mode == "none"  # fp32 in both processes: the sampler is exact
    assert [s["completion"] for s in s_proc] == [s["completion"] for s in s_hf]
    assert len({s["completion"] for s in s_hf if s["step"] == 3} ^ {s["completion"] for s in s_hf if s["step"] == 1}) > 0
    for key in ("loss", "reward/mean", "grad_norm", "logprob/sampler_abs_diff", "completion/len_mean"):
        assert [m[key] for m in m_proc] == [m[key] for m in m_hf], key
    assert all(m["logprob/sampler_abs_diff"] < 1e-5 for m in m_proc)  # the synced weights are the trainer's
    assert all("policy_lag" not in s for s in s_proc)
    proc.backend.close()


@pytest.mark.slow
def test_overlap_records_a_lag_of_one_and_corrects_it(test_plugins, tiny_model_dir, tmp_path):
    cfg = _cfg(tiny_model_dir, tmp_path, "rollout=hf_process", "rollout.overlap=true", "trainer.save_every=2",
               "eval.every=2", "eval.num_problems=2")  # at step 2, step 3's rollout is drained for both
    trainer, metrics, samples = _run(cfg, tmp_path, test_plugins)
    assert [json.loads(line)["step"] for line in (tmp_path / "eval.jsonl").read_text().splitlines()] == [2]
    assert trainer.is_mode == "truncate"  # on with the overlap although the sampler's numbers are exact
    assert [m["rollout/policy_lag"] for m in metrics] == [0.0, 1.0, 1.0]
    assert {s["step"]: s["policy_lag"] for s in samples} == {1: 0, 2: 1, 3: 1}
    # step 1 was sampled by the weights it trains: ratio 1; later steps by the weights one update back
    assert metrics[0]["is/ratio_mean"] == pytest.approx(1.0, abs=1e-5)
    assert all(abs(m["is/ratio_mean"] - 1.0) > 1e-4 for m in metrics[1:])
    assert all(m["logprob/sampler_abs_diff"] > 1e-4 for m in metrics[1:])
    for m in metrics:
        assert all(math.isfinite(m[k]) for k in ("loss", "grad_norm", "reward/mean", "is/ratio_mean")), m
        assert 0.0 <= m["time/generate_wait"] <= m["time/step"] and m["time/generate"] > 0.0
    # the checkpoint of step 2 drained the rollout of step 3 and kept it with the data position
    state = torch.load(tmp_path / "checkpoints" / "step_000002" / "trainer_state.pt", weights_only=False)
    episodes, _, _, version = state["sampler"]["pending"]
    assert version == 1 and len(episodes) == 8
    assert [trainer.tokenizer.decode(e.completion_ids, skip_special_tokens=True) for e in episodes] == [
        s["completion"] for s in samples if s["step"] == 3]  # and step 3 trained on exactly those
    trainer.backend.close()


@pytest.mark.slow
def test_a_resumed_overlapped_run_continues_the_same_trajectory(test_plugins, tiny_model_dir, tmp_path):
    """The step-2 checkpoint holds step 3's drained rollout: resumed from it, steps 3 and 4 (whose rollout the
    resumed run samples itself, from the restored RNG) come out as in the uninterrupted run."""
    import shutil

    extra = ("rollout=hf_process", "rollout.overlap=true", "trainer.max_steps=4", "trainer.save_every=2")
    whole = tmp_path / "whole"
    trainer, m_whole, s_whole = _run(_cfg(tiny_model_dir, whole, *extra), whole, test_plugins)
    trainer.backend.close()
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(whole / "checkpoints" / "step_000002", resumed / "checkpoints" / "step_000002")
    (resumed / "checkpoints" / "latest").write_text("step_000002")
    trainer, m_res, s_res = _run(_cfg(tiny_model_dir, resumed, *extra), resumed, test_plugins)
    trainer.backend.close()
    assert [m["step"] for m in m_res] == [3, 4]
    assert [m["rollout/policy_lag"] for m in m_res] == [1.0, 1.0]
    for key in ("loss", "grad_norm", "is/ratio_mean", "reward/mean"):
        assert [m[key] for m in m_res] == [m[key] for m in m_whole[2:]], key
    assert [s["completion"] for s in s_res] == [s["completion"] for s in s_whole if s["step"] >= 3]


def test_overlap_with_vllm_server_syncs_only_between_rollouts(test_plugins, tiny_model_dir, tmp_path):
    """The overlap is not hf_process's: against a stand-in ``vllm serve`` (tests/test_vllm.py), the next rollout is
    requested before the update, and each weight push comes after a rollout finished, before the next one."""
    from tests.test_vllm import _FakeVLLM

    fake = _FakeVLLM()
    try:
        cfg = _cfg(tiny_model_dir, tmp_path / "run", "rollout=vllm_server", f"rollout.params.base_url={fake.url}",
                   f"rollout.params.weights_dir={tmp_path / 'weights'}", "rollout.overlap=true")
        trainer, metrics, samples = _run(cfg, tmp_path / "run", test_plugins)
    finally:
        fake.close()
    calls = [path for path, _ in fake.requests if path in ("/v1/completions", "/collective_rpc")]
    rollout, push = "/v1/completions", "/collective_rpc"
    # start-up push; step 1 samples R1 and starts R2 (same weights); step 2 pushes update 1, starts R3; step 3
    # pushes update 2 and starts nothing (max_steps=3)
    assert calls == [push, rollout, rollout, push, rollout, push]
    assert [m["rollout/policy_lag"] for m in metrics] == [0.0, 1.0, 1.0]
    assert trainer.is_mode == "truncate" and all(math.isfinite(m["loss"]) for m in metrics)


def test_overlap_is_refused_for_a_backend_in_the_trainers_process(tiny_model_dir, tmp_path):
    from r1gym.core.validate import ConfigCheckError, check_config

    cfg = _cfg(tiny_model_dir, tmp_path, "rollout.overlap=true")
    with pytest.raises(ValueError, match=r"rollout.backend='hf' runs in the trainer's process.*hf_process, vllm_server"):
        GRPOTrainer(cfg, tmp_path)
    with pytest.raises(ConfigCheckError, match=r"rollout.overlap: .*hf_process, vllm_server"):
        check_config(cfg)
    with pytest.raises(ValueError, match="algo.is_correction=none would ignore it"):
        GRPOTrainer(_cfg(tiny_model_dir, tmp_path, "rollout=hf_process", "rollout.overlap=true",
                         "algo.is_correction=none"), tmp_path)


def _tiny_process_backend(tiny_model_dir, **params):
    from r1gym.core.models import load_model, load_tokenizer
    from r1gym.plugins.hf_rollout.process import HFProcessBackend

    model, tok = load_model(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    return model, tok, HFProcessBackend(model, tok, threads=1, **params)


def test_a_stuck_rollout_process_is_an_error_within_its_timeout(tiny_model_dir):
    from r1gym.core.rollout import SamplingParams
    from r1gym.plugins.hf_rollout.process import RolloutProcessError

    params = SamplingParams(max_new_tokens=4)
    _, tok, backend = _tiny_process_backend(tiny_model_dir, timeout_s=3)
    prompt = tok("1 + 1 =")["input_ids"]
    assert len(backend.generate([prompt, prompt], params)) == 2  # alive: it answers
    os.kill(backend.pid, signal.SIGSTOP)  # stuck: no answer within timeout_s
    started = time.monotonic()
    with pytest.raises(RolloutProcessError, match=r"did not answer within 3 s while generating.*timeout_s"):
        backend.generate([prompt], params)
    assert time.monotonic() - started < 30
    with pytest.raises(RolloutProcessError, match="no longer usable: .*did not answer within 3 s"):  # not used again
        backend.generate([prompt], params)


def test_a_killed_rollout_process_is_an_error_not_a_hang(tiny_model_dir):
    from r1gym.core.rollout import SamplingParams
    from r1gym.plugins.hf_rollout.process import RolloutProcessError

    model, tok, backend = _tiny_process_backend(tiny_model_dir)
    os.kill(backend.pid, signal.SIGKILL)
    with pytest.raises(RolloutProcessError, match=r"was killed by signal SIGKILL .*while generating"):
        backend.generate([tok("1 + 1 =")["input_ids"]], SamplingParams(max_new_tokens=4))
    with pytest.raises(RolloutProcessError, match="no longer usable: .*killed by signal SIGKILL"):
        backend.sync_weights(model)


def test_the_rollout_ahead_hands_its_result_or_its_error_to_the_trainer():
    from r1gym.core.overlap import RolloutAhead

    ahead = RolloutAhead()
    assert ahead.result() is None and not ahead.in_flight
    ahead.start(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        ahead.result()
    ahead.start(lambda: 5)
    with pytest.raises(RuntimeError, match="already in flight"):
        ahead.start(lambda: 6)
    assert ahead.in_flight and ahead.result() == 5 and not ahead.in_flight


def test_the_rollout_process_choice_reaches_the_run_folder_and_a_resume_reuses_it(tiny_model_dir, tmp_path,
                                                                                   monkeypatch):
    """``rollout.params.dtype=auto`` is timed in the child (its threads, its cores); the choice is the
    run's: written to precision.json by the trainer's process, and handed back to the child on resume."""
    import json

    from r1gym.core import precision

    for name in ("_choices", "_pins"):
        monkeypatch.setattr(precision, name, {})
    monkeypatch.setattr(precision, "_run_file", None)
    precision.start_run(tmp_path, resume=False)
    _, _, backend = _tiny_process_backend(tiny_model_dir, dtype="auto", batch_size=4)
    try:
        made = precision.chosen()["rollout.params.dtype"]
        assert made["how"] == "measured" and set(made["timings_ms"]) == {"null", "bfloat16"}
        assert backend.exact_logprobs == (made["choice"] is None)
    finally:
        backend.close()
    saved = json.loads((tmp_path / precision.RUN_FILE).read_text())["rollout.params.dtype"]
    assert saved == made
    # a resumed run: the child reuses the recorded choice instead of timing (forced to bf16 here to see it)
    (tmp_path / precision.RUN_FILE).write_text(json.dumps(
        {"rollout.params.dtype": {"choice": "bfloat16", "timings_ms": {}, "how": "measured"}}))
    assert precision.start_run(tmp_path, resume=True)
    _, _, backend = _tiny_process_backend(tiny_model_dir, dtype="auto", batch_size=4)
    try:
        assert precision.chosen()["rollout.params.dtype"] == {"choice": "bfloat16", "timings_ms": {}, "how": "resumed"}
        assert backend.exact_logprobs is False
    finally:
        backend.close()
