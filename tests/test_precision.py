"""Per-machine precision choices (r1gym.core.precision): the int8 sampler against the fp32 trainer, the margin
rule both ways, ``auto`` for the sampler's weights and the trainer's autocast, the records a resumed run
reuses, and the errors for values that do not exist. No speed is asserted (speed lives in bench/)."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
import torch

from r1gym.core import onednn, precision
from r1gym.core.registry import UnknownNameError
from r1gym.core.rollout import SamplingParams
from r1gym.core.runtime import autocast, choose_autocast
from r1gym.plugins.hf_rollout import HFBackend
from tests.test_rollout import trainer_and_sampler_logprobs

ORDER = ("null", "bfloat16", "int8")


@pytest.fixture(autouse=True)
def fresh_records(monkeypatch):
    """Each test starts with no recorded choices, no pins and no run folder; the process's state comes back."""
    monkeypatch.setattr(precision, "_choices", {})
    monkeypatch.setattr(precision, "_pins", {})
    monkeypatch.setattr(precision, "_run_file", None)
    before = onednn.selected()
    yield
    onednn.select("onednn" if before else "torch")


def _prompts(tok):
    return [tok("What is 2 + 3?")["input_ids"], tok("Hi")["input_ids"], tok("Tell me a story about a cat")["input_ids"]]


# -- int8 weights -----------------------------------------------------------------------------------------------
def test_int8_weight_rounds_each_row_to_its_own_scale_and_multiplies_like_its_dequantized_copy():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(48, 32, generator=g) * torch.linspace(0.01, 3.0, 48)[:, None]  # rows of very different size
    w[5] = 0.0  # a dead output channel must not divide by zero
    qw = precision.Int8Weight.quantize(w)
    assert qw.q.dtype == torch.int8 and qw.q.abs().max() <= 127 and qw.shape == w.shape
    deq = qw.q.float() * qw.scale.float()[:, None]
    assert ((deq - w).abs() <= qw.scale.float()[:, None] * 0.5 + 1e-6).all()  # round-to-nearest, per row
    assert (deq[5] == 0).all()
    x = torch.randn(7, 3, 32, generator=g)
    bias = torch.randn(48, generator=g).bfloat16()
    y = qw.linear(x, bias)
    assert y.shape == (7, 3, 48) and y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), x.bfloat16().float() @ deq.T + bias.float(), rtol=0.02, atol=0.05)


def test_int8_sampler_logprobs_stay_close_to_the_fp32_trainer(tiny_model):
    """Measured on the tiny model (6 sequences x 16 sampled tokens): the largest |sampler - trainer| log-prob
    gap was 1.3e-3 for int8 (mean 4.7e-4; bf16: 1.4e-3, mean 4.1e-4), the fp32 sampler's 1e-6. On
    SmolLM2-135M (8 x 32 tokens) int8 gave max 0.36, mean 0.064 (bf16: 0.48, 0.038). The gap is what the
    trainer's importance correction accounts for."""
    model, tok = tiny_model
    prompts = _prompts(tok) * 2
    backend = HFBackend(model, tok, dtype="int8")
    assert backend.lean.int8 and not backend.exact_logprobs  # the trainer then corrects for the mismatch
    torch.manual_seed(0)
    gens = backend.generate(prompts, SamplingParams(temperature=1.0, max_new_tokens=16))
    trainer, sampler = trainer_and_sampler_logprobs(model, tok, prompts, gens, 1.0)
    gap = (trainer - sampler).abs()
    assert gap.max() < 0.01
    assert gap.max() > 1e-4  # a different numeric path, not the trainer's tensors


def test_int8_continuous_batching_samples_what_the_trainer_recomputes(tiny_model):
    """The slot cache's path (refilled rows: 7 sequences through 2 slots) runs the same int8 products."""
    model, tok = tiny_model
    prompts = _prompts(tok) * 2 + [tok("Once upon a time")["input_ids"]]
    backend = HFBackend(model, tok, dtype="int8", continuous=True, batch_size=2)
    torch.manual_seed(0)
    gens = backend.generate(prompts, SamplingParams(temperature=1.0, max_new_tokens=8))
    assert backend.counts["prefills"] > 1  # slots were refilled
    trainer, sampler = trainer_and_sampler_logprobs(model, tok, prompts, gens, 1.0)
    assert 1e-4 < (trainer - sampler).abs().max() < 0.01


def _forced_logits(decoder, prompt, tokens):
    """The next-token logits at every position of ``prompt + tokens``, teacher-forced through ``decoder``."""
    ids = torch.tensor([prompt])
    with torch.no_grad():
        logits, cache = decoder.prefill(ids, torch.ones_like(ids), len(tokens))
        out = [logits[0]]
        for i, t in enumerate(tokens[:-1]):
            out.append(decoder.decode(torch.tensor([t]), torch.tensor([len(prompt) + i]), cache)[0])
    return torch.stack(out)


def test_int8_greedy_choice_is_fp32s_wherever_fp32_has_a_clear_preference(tiny_model):
    """Greedy decoding of a random model diverges for good at the first near-tie (measured: bf16 and int8 both
    leave fp32's greedy path within a few tokens on the sharpened tiny model), so tokens are compared
    teacher-forced along fp32's greedy completions: int8's top token is fp32's at every position where fp32's
    top two logits are more than 0.2 apart (measured: the widest gap int8 flipped was 0.085; bf16: 0.014), and
    at >= 80% of all positions (measured: 90%; bf16 94%). The tiny model's weights are scaled x10 so that it
    writes varied tokens (at x1 it repeats one token, and every check would pass trivially)."""
    from r1gym.plugins.hf_rollout.lean import LeanDecoder

    model, tok = tiny_model
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(10.0)
    prompts = _prompts(tok) + [tok("The quick brown fox jumps over")["input_ids"], tok("1 2 3 4 5")["input_ids"]]
    greedy = HFBackend(model, tok).generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=24))
    assert min(len(set(g.token_ids)) for g in greedy) > 8  # varied completions, not one token repeated
    fp32 = torch.cat([_forced_logits(LeanDecoder(model), p, g.token_ids) for p, g in zip(prompts, greedy)])
    int8 = torch.cat([_forced_logits(LeanDecoder(model, torch.int8), p, g.token_ids) for p, g in zip(prompts, greedy)])
    top2 = fp32.topk(2, dim=-1).values
    clear = top2[:, 0] - top2[:, 1] > 0.2
    agree = fp32.argmax(-1) == int8.argmax(-1)
    assert clear.sum() >= len(clear) // 2
    assert agree[clear].all()
    assert agree.float().mean() >= 0.8


def test_int8_copy_follows_weight_sync(tiny_model):
    model, tok = tiny_model
    prompts = _prompts(tok)
    params = SamplingParams(temperature=0.0, max_new_tokens=6)
    backend = HFBackend(model, tok, dtype="int8")
    before = backend.generate(prompts, params)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.mul_(-40.0)  # an "optimizer step" on a quantized projection
        model.model.layers[1].self_attn.o_proj.weight.mul_(-40.0)
    stale = backend.generate(prompts, params)
    backend.sync_weights(model)
    synced = backend.generate(prompts, params)
    fresh = HFBackend(model, tok, dtype="int8").generate(prompts, params)
    fp32 = HFBackend(model, tok).generate(prompts, params)
    assert [g.token_ids for g in stale] == [g.token_ids for g in before]  # only a sync refreshes the copy
    assert [g.token_ids for g in synced] == [g.token_ids for g in fresh]
    assert [g.token_ids for g in synced] != [g.token_ids for g in before]  # the change did change the samples
    assert [g.token_ids for g in synced] == [g.token_ids for g in fp32]


# -- the margin rule and the timing ------------------------------------------------------------------------------
@pytest.mark.parametrize(("timings", "expected"), [
    ({"null": 1.0, "bfloat16": 0.9, "int8": 0.85}, "null"),  # nothing 1.2x faster: stay exact
    ({"null": 1.0, "bfloat16": 0.8, "int8": 0.9}, "bfloat16"),
    ({"null": 1.0, "bfloat16": 0.8, "int8": 0.7}, "bfloat16"),  # int8 only 1.14x bf16: keep the more precise
    ({"null": 1.0, "bfloat16": 0.8, "int8": 0.6}, "int8"),
    ({"null": 1.0, "bfloat16": 0.9, "int8": 0.8}, "int8"),  # 1.25x fp32, bf16 never chosen
    ({"null": 1.0, "int8": 0.5}, "int8"),  # a candidate not available here is skipped
    ({"null": 1.0, "bfloat16": 2.0, "int8": 3.0}, "null"),  # AVX2-only: bf16 slower than fp32
])
def test_choose_takes_a_less_precise_candidate_only_with_the_margin(timings, expected):
    assert precision.choose(timings, ORDER) == expected


def test_interleaved_best_alternates_the_order_and_keeps_each_fastest_round():
    seen, script = [], {"a": iter([5.0, 3.0, 4.0]), "b": iter([1.0, 2.0, 0.5])}
    calls = {"a": 0, "b": 0}

    def timer(fn, reps):
        name = fn()
        seen.append(name)
        return next(script[name])

    fns = {n: (lambda n=n: calls.__setitem__(n, calls[n] + 1) or n) for n in ("a", "b")}
    assert precision.interleaved_best(fns, rounds=3, timer=timer) == {"a": 3.0, "b": 0.5}
    assert seen == ["a", "b", "b", "a", "a", "b"]
    assert calls == {"a": 4, "b": 4}  # one warm-up call each, then one per round (the timer's)


# -- rollout.params.dtype=auto -----------------------------------------------------------------------------------
def test_auto_dtype_measures_picks_an_allowed_choice_and_records_it(tiny_model, tmp_path, caplog):
    model, tok = tiny_model
    precision.start_run(tmp_path, resume=False)
    with caplog.at_level(logging.INFO, logger="r1gym.core.precision"):
        backend = HFBackend(model, tok, dtype="auto", batch_size=4, auto_dtypes=["int8", None, "bfloat16"])
    assert backend.auto_dtypes == ORDER  # most precise first, whatever order they were given in
    assert backend.dtype_choice in (None, "bfloat16", "int8")
    assert set(backend.dtype_timings_ms) == set(ORDER) and all(t > 0 for t in backend.dtype_timings_ms.values())
    assert backend.exact_logprobs == (backend.dtype_choice is None)
    assert backend.lean.int8 == (backend.dtype_choice == "int8")
    lines = [r.getMessage() for r in caplog.records if "rollout.params.dtype=auto" in r.getMessage()]
    assert len(lines) == 1 and "int8" in lines[0] and "ms" in lines[0]
    saved = json.loads((tmp_path / precision.RUN_FILE).read_text())
    assert saved["rollout.params.dtype"]["choice"] == backend.dtype_choice
    assert saved["rollout.params.dtype"]["timings_ms"] == backend.dtype_timings_ms
    gens = backend.generate(_prompts(tok), SamplingParams(temperature=0.0, max_new_tokens=4))
    assert all(len(g.token_ids) == 4 or g.finish_reason == "stop" for g in gens)


def test_auto_dtype_times_only_the_checked_precisions_unless_told_otherwise(tiny_model):
    """int8's learning curves were never checked, so by default ``auto`` neither times nor picks it."""
    model, tok = tiny_model
    backend = HFBackend(model, tok, dtype="auto", batch_size=4)
    assert backend.auto_dtypes == ("null", "bfloat16")
    assert set(backend.dtype_timings_ms) == {"null", "bfloat16"} and not backend.lean.int8
    only_fp32 = HFBackend(model, tok, dtype="auto", batch_size=4, auto_dtypes=[None])
    assert only_fp32.dtype_choice is None and set(only_fp32.dtype_timings_ms) == {"null"}


def test_unknown_auto_dtype_entry_lists_the_valid_ones(tiny_model):
    model, tok = tiny_model
    with pytest.raises(UnknownNameError, match=r"auto_dtypes entry 'bf16'.*bfloat16.*int8"):
        HFBackend(model, tok, dtype="auto", auto_dtypes=["null", "bf16"])


@pytest.mark.parametrize("recorded", ["int8", "bfloat16", None])
def test_a_resumed_run_reuses_the_recorded_choices_without_measuring(tiny_model, tmp_path, monkeypatch, recorded):
    model, tok = tiny_model
    (tmp_path / precision.RUN_FILE).write_text(json.dumps({
        "rollout.params.dtype": {"choice": recorded, "timings_ms": {}, "how": "measured"},
        "trainer.autocast": {"choice": "bf16", "timings_ms": {}, "how": "measured"},
        "trainer.matmul": {"choice": "torch", "timings_ms": {}, "how": "measured"}}))
    assert precision.start_run(tmp_path, resume=True)

    def no_timing(*args, **kwargs):
        raise AssertionError("a resumed run must not measure again")

    monkeypatch.setattr(precision, "interleaved_best", no_timing)
    backend = HFBackend(model, tok, dtype="auto")
    assert backend.dtype_choice == recorded
    assert backend.lean.int8 == (recorded == "int8")
    assert backend.lean.dtype == {"int8": torch.bfloat16, "bfloat16": torch.bfloat16, None: torch.float32}[recorded]
    assert choose_autocast("cpu") == "bf16"
    assert onednn.select("auto") is False
    assert precision.chosen()["rollout.params.dtype"]["how"] == "resumed"
    assert not precision.start_run(tmp_path, resume=False)  # a fresh run in the same folder measures again
    assert precision.pins() == {}


def test_auto_dtype_without_the_lean_decoder_keeps_the_models_weights(tiny_model):
    model, tok = tiny_model
    backend = HFBackend(model, tok, dtype="auto", decoder="hf")
    assert backend.dtype_choice is None and backend.exact_logprobs
    assert precision.chosen()["rollout.params.dtype"] == {"choice": None, "timings_ms": {}, "how": "only"}


def test_unknown_dtype_lists_the_valid_ones(tiny_model):
    model, tok = tiny_model
    with pytest.raises(UnknownNameError) as err:
        HFBackend(model, tok, dtype="int4")
    msg = str(err.value)
    assert "rollout.params.dtype" in msg and "'int4'" in msg
    for name in ("auto", "bfloat16", "float32", "int8"):
        assert name in msg
    assert "Did you mean 'int8'" in msg


# -- trainer.autocast=auto ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("timings", "expected"), [({"null": 1.0, "bf16": 0.5}, "bf16"),
                                                   ({"null": 1.0, "bf16": 0.9}, None),
                                                   ({"null": 1.0, "bf16": 1.5}, None)])
def test_autocast_auto_takes_bf16_only_with_the_margin(timings, expected):
    assert choose_autocast("cpu", timings) == expected
    assert precision.chosen()["trainer.autocast"]["choice"] == expected


def test_autocast_auto_measures_once_at_the_first_forward_and_gives_that_context():
    factory = autocast(SimpleNamespace(autocast="auto"), "cpu")
    assert "trainer.autocast" not in precision.chosen()  # nothing measured before the first forward
    with factory():
        on = torch.is_autocast_enabled("cpu")
        y = torch.ones(4, 8) @ torch.ones(8, 2)
    rec = precision.chosen()["trainer.autocast"]
    assert rec["choice"] in (None, "bf16") and on == (rec["choice"] == "bf16")
    assert y.dtype == (torch.bfloat16 if on else torch.float32)
    assert set(rec["timings_ms"]) == {"null", "bf16"} and all(t > 0 for t in rec["timings_ms"].values())
    precision._choices.clear()
    with factory():
        pass
    assert "trainer.autocast" not in precision.chosen()  # decided once


def test_unknown_autocast_mode_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match=r"trainer.autocast mode 'bf17'.*auto, bf16, fp16.*Did you mean 'bf16'"):
        autocast(SimpleNamespace(autocast="bf17"), "cpu")
    assert autocast(SimpleNamespace(autocast=None), "cpu")().__class__.__name__ == "nullcontext"


# -- trainer.matmul=auto -----------------------------------------------------------------------------------------
def test_matmul_auto_records_its_interleaved_timings():
    chose = onednn.select("auto")
    rec = precision.chosen()["trainer.matmul"]
    assert rec["choice"] == ("onednn" if chose else "torch")
    if onednn.available():
        assert set(rec["timings_ms"]) == {"torch", "onednn"} and all(t > 0 for t in rec["timings_ms"].values())
