"""The GRPO trainer in-process on a tiny random model: unscorable samples are counted and masked, dynamic
sampling refills, phases are timed, and the small parts (prompt sampler, LR schedule) behave."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch

from r1gym.core.config import compose
from r1gym.core.grpo import GRPOTrainer, PromptSampler, build_scheduler
from tests.conftest import TESTS


@pytest.fixture()
def test_plugins(monkeypatch):
    """A plugin host of the test's own with tests/plugins/varied_reward.py registered through its hooks; the
    trainers below are given it (``host=``), so nothing reaches the process-wide host."""
    import importlib

    from r1gym.core.plugins import load_plugins

    monkeypatch.syspath_prepend(str(TESTS / "plugins"))
    return load_plugins(autoload=False, extra=[("varied_reward", importlib.import_module("varied_reward"))])


def _cfg(model_dir, run_dir, *extra):
    return compose([
        f"model.name_or_path={model_dir}", "env=arithmetic", "algo.prompts_per_step=2", "algo.group_size=4",
        "algo.micro_batch_size=4", "rollout.max_new_tokens=6", "trainer.max_steps=2", "trainer.save_every=100",
        "trainer.threads=1", "eval.at_start=false", "eval.at_end=false", "logger=jsonl_only", f"run_dir={run_dir}",
        *extra,
    ])


def test_unscorable_samples_are_counted_and_masked(test_plugins, tiny_model_dir, tmp_path):
    cfg = _cfg(tiny_model_dir, tmp_path, "+env.kwargs.rewards.flaky_parity=1.0")
    trainer = GRPOTrainer(cfg, tmp_path, host=test_plugins)
    trainer.setup()
    metrics, samples = trainer.train_step()
    n_bad = sum(1 for s in samples if "flaky_parity" in s["unscorable"])
    assert 0 < n_bad < len(samples), "about half the completions have odd length"
    assert metrics["unscorable/count"] == n_bad
    assert metrics["unscorable/flaky_parity"] == n_bad
    for s in samples:
        if s["unscorable"]:
            assert math.isnan(s["reward"]) and s["advantage"] == 0.0
            assert s["unscorable"]["flaky_parity"].startswith("RuntimeError: checker crashed")
    assert math.isfinite(metrics["loss"]) and math.isfinite(metrics["reward/mean"])


def test_reward_flags_are_counted_per_step_and_shown_per_sample(test_plugins, tiny_model_dir, tmp_path):
    cfg = _cfg(tiny_model_dir, tmp_path, "+env.kwargs.rewards.flags_even=0.0", "trainer.log_samples=-1")
    trainer = GRPOTrainer(cfg, tmp_path, host=test_plugins)
    trainer.setup()
    metrics, samples = trainer.train_step()
    flagged = [s for s in samples if s["flags"]]
    assert all(s["flags"] == {"flags_even": ["hack_pattern"]} for s in flagged)
    assert sorted(len(s["completion"]) % 2 for s in flagged) == [0] * len(flagged)
    assert metrics["flags/hack_pattern"] == metrics["flags/flags_even/hack_pattern"] == len(flagged)
    assert metrics["flags/ended_early"] == metrics["flags/fallback"] == 0.0  # watched flags show from step 1


def test_a_run_whose_rewards_stop_working_stops_itself_with_the_reason(test_plugins, tiny_model_dir, tmp_path):
    cfg = _cfg(tiny_model_dir, tmp_path, "+env.kwargs.rewards.sandbox_down=1.0", "trainer.max_steps=6",
               "trainer.unscorable_patience=2")
    with pytest.raises(RuntimeError, match=r"stopping at step 2: more than 50% .* 2 steps in a row .*bwrap.*resume="):
        GRPOTrainer(cfg, tmp_path, host=test_plugins).train()
    assert [json.loads(l)["step"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step_000002"  # resumable once fixed


def test_unscorable_score_policy_uses_the_configured_value(test_plugins, tiny_model_dir, tmp_path):
    cfg = _cfg(tiny_model_dir, tmp_path, "+env.kwargs.rewards.flaky_parity=1.0",
               "env.kwargs.unscorable=score", "+env.kwargs.unscorable_score=-1.0")
    trainer = GRPOTrainer(cfg, tmp_path, host=test_plugins)
    trainer.setup()
    _, samples = trainer.train_step()
    bad = [s for s in samples if s["unscorable"]]
    assert bad and all(s["reward"] == -1.0 for s in bad)


def test_dynamic_sampling_drops_flat_groups(test_plugins, tiny_model_dir, tmp_path):
    # arithmetic reward on a random model is always 0: every group is flat, so every round drops them all
    cfg = _cfg(tiny_model_dir, tmp_path, "algo.dynamic_sampling=true", "algo.max_sampling_rounds=2")
    trainer = GRPOTrainer(cfg, tmp_path, host=test_plugins)
    trainer.setup()
    metrics, samples = trainer.train_step()
    assert metrics["sampling/rounds"] == 2.0
    assert metrics["sampling/groups_dropped"] == 4.0  # 2 prompts x 2 rounds
    assert samples == []


def test_step_metrics_time_every_phase(test_plugins, tiny_model_dir, tmp_path):
    cfg = _cfg(tiny_model_dir, tmp_path, "+env.kwargs.rewards.char_variety=1.0", "algo.beta=0.1")
    trainer = GRPOTrainer(cfg, tmp_path, host=test_plugins)
    trainer.setup()
    assert trainer.ref_model is not None
    started = time.perf_counter()
    metrics, _ = trainer.train_step()
    wall = time.perf_counter() - started
    phases = ("generate", "reward", "reference", "forward_backward", "optimizer", "weight_sync")
    for phase in (*phases, "step"):
        assert 0.0 < metrics[f"time/{phase}"] <= wall, phase  # measured, and within the call that measured it
    assert metrics["kl"] >= 0.0
    # the phases run one after another inside the step: together they take no longer than it
    assert sum(metrics[f"time/{p}"] for p in phases) <= metrics["time/step"]


def test_beta_zero_loads_no_reference_model(test_plugins, tiny_model_dir, tmp_path):
    trainer = GRPOTrainer(_cfg(tiny_model_dir, tmp_path), tmp_path, host=test_plugins)
    trainer.setup()
    assert trainer.ref_model is None


def test_full_run_writes_run_folder(test_plugins, tiny_model_dir, tmp_path):
    cfg = _cfg(tiny_model_dir, tmp_path, "eval.at_start=true", "eval.at_end=true", "eval.num_problems=3")
    summary = GRPOTrainer(cfg, tmp_path, host=test_plugins).train()
    assert summary["status"] == "finished"
    assert [json.loads(l)["step"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert [json.loads(l)["step"] for l in (tmp_path / "eval.jsonl").read_text().splitlines()] == [0, 2]
    assert summary["eval_end"]["eval/num_problems"] == 3.0
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step_000002"


def test_prompt_sampler_covers_each_epoch_and_resumes():
    s = PromptSampler(5, seed=3)
    first = s.take(5)
    assert sorted(first) == [0, 1, 2, 3, 4]
    a = s.take(3)
    state = s.state_dict()
    b = s.take(4)  # crosses into the third epoch
    assert sorted(a + b[:2]) == [0, 1, 2, 3, 4]
    assert first != a + b[:2]  # a new permutation each epoch
    t = PromptSampler(5, seed=3)
    t.load_state_dict(state)
    assert t.take(4) == b


@pytest.mark.parametrize("name,expected", [
    ("constant", [0.5, 1.0, 1.0, 1.0, 1.0]),
    # after 2 warm-up steps the decay runs over the remaining 3 and would reach 0 at step 5
    ("linear", [0.5, 1.0, 1.0, 2 / 3, 1 / 3]),
    ("cosine", [0.5, 1.0, 1.0, 0.75, 0.25]),
])
def test_lr_schedules(name, expected):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, name, warmup=2, total=5)
    seen = []
    for _ in range(5):
        seen.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert seen == pytest.approx(expected)


def test_unknown_schedule_lists_known_ones():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="Known LR schedules: constant, cosine, linear. Did you mean 'cosine'"):
        build_scheduler(opt, "cosin", 0, 5)


def _grads_after_one_step(host, model_dir, run_dir, *extra):
    """Run one train_step with lr=0 (weights unchanged) and return the accumulated gradients by name."""
    cfg = _cfg(model_dir, run_dir, "+env.kwargs.rewards.char_variety=1.0", "algo.optim.lr=0.0",
               "algo.optim.max_grad_norm=1e9", *extra)
    trainer = GRPOTrainer(cfg, run_dir, host=host)
    trainer.setup()
    captured = {}

    def capture(optimizer, args, kwargs):
        for n, p in trainer.model.named_parameters():
            if p.grad is not None:
                captured[n] = p.grad.clone()

    trainer.optimizer.register_step_pre_hook(capture)
    metrics, _ = trainer.train_step()
    return captured, metrics


@pytest.mark.parametrize("aggregation", ["seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm"])
def test_gradient_accumulation_equals_one_big_batch(test_plugins, tiny_model_dir, tmp_path, aggregation):
    big, m_big = _grads_after_one_step(test_plugins, tiny_model_dir, tmp_path / "a", "algo.micro_batch_size=8",
                                      f"algo.loss_aggregation={aggregation}")
    small, m_small = _grads_after_one_step(test_plugins, tiny_model_dir, tmp_path / "b", "algo.micro_batch_size=4",
                                          f"algo.loss_aggregation={aggregation}")
    assert m_big["reward/mean"] == m_small["reward/mean"]  # same samples
    assert big.keys() == small.keys() and big
    assert any(g.abs().sum() > 0 for g in big.values())
    for name in big:
        torch.testing.assert_close(small[name], big[name], rtol=1e-4, atol=1e-7, msg=name)
    assert m_small["loss"] == pytest.approx(m_big["loss"], rel=1e-4, abs=1e-7)


def test_several_iterations_use_stored_old_logprobs(test_plugins, tiny_model_dir, tmp_path):
    cfg = _cfg(tiny_model_dir, tmp_path, "+env.kwargs.rewards.char_variety=1.0", "algo.num_iterations=3",
               "algo.optim.lr=1e-2")
    trainer = GRPOTrainer(cfg, tmp_path, host=test_plugins)
    trainer.setup()
    metrics, _ = trainer.train_step()
    # after the first update the policy moved away from the stored old log-probs: the ratio is no longer 1
    assert metrics["ratio_mean"] != pytest.approx(1.0, abs=1e-6)


def test_mask_truncated_drops_completions_that_hit_the_limit(test_plugins, tiny_model_dir, tmp_path):
    # a random model never samples EOS within 6 tokens: every completion is truncated, nothing is trained
    cfg = _cfg(tiny_model_dir, tmp_path, "+env.kwargs.rewards.char_variety=1.0", "algo.mask_truncated=true")
    trainer = GRPOTrainer(cfg, tmp_path, host=test_plugins)
    trainer.setup()
    metrics, samples = trainer.train_step()
    assert metrics["completion/truncated_frac"] == 1.0 and all(s["truncated"] for s in samples)
    assert metrics["trained_tokens"] == 0.0 and metrics["grad_norm"] == 0.0


def test_freeze_embeddings_keeps_them_fixed(test_plugins, tiny_model_dir, tmp_path):
    cfg = _cfg(tiny_model_dir, tmp_path, "+env.kwargs.rewards.char_variety=1.0", "algo.optim.lr=1e-2",
               "model.freeze=[embeddings]")
    trainer = GRPOTrainer(cfg, tmp_path, host=test_plugins)
    trainer.setup()
    emb = trainer.model.get_input_embeddings().weight.detach().clone()
    layer = trainer.model.model.layers[0].mlp.up_proj.weight.detach().clone()
    trainer.train_step()
    assert torch.equal(trainer.model.get_input_embeddings().weight, emb)
    assert not torch.equal(trainer.model.model.layers[0].mlp.up_proj.weight, layer)
    with pytest.raises(ValueError, match="Known model.freeze groups: embeddings, lm_head"):
        GRPOTrainer(_cfg(tiny_model_dir, tmp_path / "x", "model.freeze=[embedings]"), tmp_path / "x", host=test_plugins).setup()


def test_lora_trains_adapters_only_and_resumes(test_plugins, tiny_model_dir, tmp_path):
    pytest.importorskip("peft", reason="LoRA needs the 'lora' extra (peft); make test installs it")
    from r1gym.core.checkpoint import latest_checkpoint

    extra = ("+env.kwargs.rewards.char_variety=1.0", "algo.optim.lr=1e-2", "model.lora.r=4", "algo.beta=0.1",
             "model.lora.target_modules=[q_proj,v_proj]", "trainer.save_every=1")
    trainer = GRPOTrainer(_cfg(tiny_model_dir, tmp_path, *extra), tmp_path, host=test_plugins)
    trainer.setup()
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert trainer.ref_model is None  # the reference is the policy with adapters off
    base = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if not p.requires_grad}
    metrics, _ = trainer.train_step()
    assert metrics["kl"] >= 0.0 and metrics["time/reference"] > 0
    trainer.save(1)
    for n, p in trainer.model.named_parameters():
        if n in base:
            assert torch.equal(p, base[n]), n
    ckpt = latest_checkpoint(tmp_path)
    assert (ckpt / "adapter_model.safetensors").exists() and not (ckpt / "model.safetensors").exists()
    adapters = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}
    resumed = GRPOTrainer(_cfg(tiny_model_dir, tmp_path, *extra), tmp_path, host=test_plugins)
    assert resumed.setup() == 1
    for n, p in resumed.model.named_parameters():
        if n in adapters:
            assert torch.equal(p, adapters[n]), n


def test_bf16_autocast_step_trains_in_fp32_weights(test_plugins, tiny_model_dir, tmp_path):
    cfg = _cfg(tiny_model_dir, tmp_path, "+env.kwargs.rewards.char_variety=1.0", "trainer.autocast=bf16",
               "algo.optim.lr=1e-2")
    trainer = GRPOTrainer(cfg, tmp_path, host=test_plugins)
    trainer.setup()
    before = trainer.model.model.layers[0].mlp.up_proj.weight.detach().clone()
    metrics, _ = trainer.train_step()
    w = trainer.model.model.layers[0].mlp.up_proj.weight
    assert w.dtype == torch.float32 and not torch.equal(w, before)
    assert math.isfinite(metrics["loss"]) and metrics["grad_norm"] > 0
    # bf16 forward passes differ from the fp32 sampler's log-probs, but not wildly
    assert metrics["logprob/sampler_abs_diff"] < 0.5
    with pytest.raises(ValueError, match="Known trainer.autocast modes: auto, bf16, fp16"):
        GRPOTrainer(_cfg(tiny_model_dir, tmp_path / "y", "trainer.autocast=bf61"), tmp_path / "y", host=test_plugins).autocast()


@pytest.mark.parametrize(("params", "mode"), [([], "none"), (["+rollout.params.dtype=bfloat16"], "truncate"),
                                              (["algo.is_correction=mask"], "mask")])
def test_importance_correction_is_on_exactly_when_the_sampler_is_not_the_trainer(tiny_model_dir, tmp_path, params, mode):
    trainer = GRPOTrainer(_cfg(tiny_model_dir, tmp_path, *params), tmp_path)
    trainer.setup()
    assert trainer.is_mode == mode
    metrics, _ = trainer.train_step()
    assert ("is/ratio_mean" in metrics) == (mode != "none") and math.isfinite(metrics["loss"])
