"""The hf backend's sampling loop: same tokens as transformers' generate (greedy), log-probs that the
trainer's recomputation agrees with, finished rows leaving the batch, and the episode loop around it."""

from __future__ import annotations

import pytest
import torch

from r1gym.core.batch import completion_logprobs, pack
from r1gym.core.rollout import SamplingParams
from r1gym.plugins.hf_rollout import HFBackend, sample_next


@pytest.fixture()
def backend(tiny_model):
    model, tok = tiny_model
    return HFBackend(model, tok)


def _prompts(tok):
    return [tok("What is 2 + 3?")["input_ids"], tok("Hi")["input_ids"], tok("What is 2 + 3?")["input_ids"]]


def test_greedy_loop_matches_transformers_generate(backend, smollm2_tokenizer):
    prompts = _prompts(smollm2_tokenizer)
    params = SamplingParams(temperature=0.0, max_new_tokens=12)
    ours = backend.generate(prompts, params)
    backend.mode = "generate"
    theirs = backend.generate(prompts, params)
    assert [g.token_ids for g in ours] == [g.token_ids for g in theirs]
    for a, b in zip(ours, theirs):
        assert a.finish_reason == b.finish_reason
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)


def test_sampled_logprobs_match_trainer_recomputation(backend, tiny_model, smollm2_tokenizer):
    from r1gym.core.rollout import Episode

    model, _ = tiny_model
    torch.manual_seed(0)
    prompts = _prompts(smollm2_tokenizer)
    gens = backend.generate(prompts, SamplingParams(temperature=0.8, top_p=0.9, max_new_tokens=10))
    eps = [Episode(group=i, task_index=i, prompt_ids=list(p), completion_ids=g.token_ids,
                   completion_mask=[1] * len(g.token_ids), sampler_logprobs=g.logprobs) for i, (p, g) in enumerate(zip(prompts, gens))]
    batch = pack(eps, smollm2_tokenizer.pad_token_id)
    with torch.no_grad():
        lp, _ = completion_logprobs(model, batch, temperature=0.8)
    m = batch.loss_mask.bool()
    torch.testing.assert_close(lp[m], batch.sampler_logprobs[m], rtol=1e-4, atol=1e-4)


def test_eos_ends_a_row_early_and_others_go_on(tiny_model, smollm2_tokenizer):
    model, tok = tiny_model
    backend = HFBackend(model, tok)
    prompts = _prompts(tok)
    params = SamplingParams(temperature=0.0, max_new_tokens=6)
    base = backend.generate(prompts, params)
    assert all(g.finish_reason == "length" and len(g.token_ids) == 6 for g in base)
    # pretend a token that row 1 produces (and rows 0 and 2 never do) is the end-of-sequence token
    end = next(t for t in base[1].token_ids if t not in base[0].token_ids)
    k = base[1].token_ids.index(end)
    backend.eos_ids = {end}
    gens = backend.generate(prompts, params)
    assert gens[1].token_ids == base[1].token_ids[: k + 1] and gens[1].finish_reason == "stop"
    assert gens[1].logprobs == pytest.approx(base[1].logprobs[: k + 1], abs=1e-5)
    for i in (0, 2):  # the other rows go on, unchanged by the row that left the batch
        assert gens[i].token_ids == base[i].token_ids and gens[i].finish_reason == "length"
        assert gens[i].logprobs == pytest.approx(base[i].logprobs, abs=1e-5)


def test_sample_next_respects_top_k_and_top_p():
    torch.manual_seed(0)
    logits = torch.tensor([[5.0, 4.0, 1.0, 0.0, -1.0]]).repeat(2000, 1)
    tok, lp = sample_next(logits, 1.0, 2, 1.0)
    assert set(tok.tolist()) <= {0, 1} and len(set(tok.tolist())) == 2
    tok, _ = sample_next(logits, 1.0, 0, 0.5)  # p(token 0) = 0.71 > 0.5: only token 0 survives
    assert set(tok.tolist()) == {0}
    # log-probs are of the tempered, unfiltered distribution
    expected = torch.log_softmax(logits[0] / 2.0, -1)
    tok, lp = sample_next(logits, 2.0, 2, 1.0)
    torch.testing.assert_close(lp, expected[tok])
    greedy, glp = sample_next(logits[:1], 0.0, 0, 1.0)
    # greedy: the untempered distribution
    assert greedy.item() == 0 and glp.item() == pytest.approx(torch.log_softmax(logits[0], -1)[0].item())


def test_stop_strings_end_a_row(backend, smollm2_tokenizer):
    prompts = _prompts(smollm2_tokenizer)
    params = SamplingParams(temperature=0.0, max_new_tokens=8)
    base = backend.generate(prompts, params)
    # stop on the text of row 0's second token: row 0 ends right there, with finish reason "stop"
    stop = smollm2_tokenizer.decode(base[0].token_ids[:2], skip_special_tokens=True)[-3:]
    assert stop.strip(), "need a visible stop string"
    gens = backend.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=8, stop=(stop,)))
    assert gens[0].finish_reason == "stop" and len(gens[0].token_ids) <= 2
    assert gens[0].text.endswith(stop)
    assert gens[0].token_ids == base[0].token_ids[: len(gens[0].token_ids)]
