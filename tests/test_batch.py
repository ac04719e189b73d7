"""The fast log-probability path (shared prompts, LM head on completion positions only) against the plain
implementation: same values and same gradients, on a random model and random episodes."""

from __future__ import annotations

import torch

from r1gym.core.batch import completion_logprobs, pack, reference_completion_logprobs
from r1gym.core.rollout import Episode


def _tiny_llama(vocab: int = 97):
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False)
    return AutoModelForCausalLM.from_config(cfg).double()


def _episodes(vocab: int = 97) -> list[Episode]:
    g = torch.Generator().manual_seed(1)
    eps = []
    # three groups with prompts of different lengths (left padding is exercised), completions of varied
    # lengths (right padding), and a multi-turn episode with env tokens (mask 0) inside its completion
    for group, plen in enumerate((5, 9, 3)):
        prompt = torch.randint(1, vocab, (plen,), generator=g).tolist()
        for k in range(3):
            n = int(torch.randint(1, 7, (1,), generator=g))
            ids = torch.randint(1, vocab, (n,), generator=g).tolist()
            mask = [1] * n
            if group == 1 and k == 2:
                mask = [1, 1, 0, 0, 1, 1][:n] + [1] * max(0, n - 6)
            eps.append(Episode(group=group, task_index=group, prompt_ids=prompt, completion_ids=ids,
                               completion_mask=mask, sampler_logprobs=[0.0] * n, reward=float(k)))
    return eps


def test_fast_logprobs_equal_plain_ones():
    model = _tiny_llama()
    batch = pack(_episodes(), pad_id=0)
    assert batch.prompt_ids.shape[0] == 3  # 9 sequences, 3 distinct prompts
    fast, _ = completion_logprobs(model, batch, temperature=0.7)
    plain = reference_completion_logprobs(model, batch, temperature=0.7)
    attn = batch.completion_attn.bool()
    torch.testing.assert_close(fast[attn], plain[attn], rtol=1e-6, atol=1e-6)
    assert torch.isfinite(fast).all()


def test_fast_gradients_equal_plain_ones():
    model = _tiny_llama()
    batch = pack(_episodes(), pad_id=0)
    weights = torch.randn(batch.loss_mask.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def grads(fn):
        model.zero_grad()
        lp = fn(model, batch)
        lp = lp[0] if isinstance(lp, tuple) else lp
        (lp * weights * batch.loss_mask).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    fast = grads(lambda m, b: completion_logprobs(m, b))
    plain = grads(lambda m, b: reference_completion_logprobs(m, b))
    assert fast.keys() == plain.keys() and len(fast) > 0
    # Llama's RMSNorm and RoPE compute in float32 even in a float64 model, so two correct orders of summing
    # the same gradient agree to float32 precision, not float64: compare norms relative to the gradient.
    for name in plain:
        rel = (fast[name] - plain[name]).norm() / plain[name].norm().clamp(min=1e-30)
        assert rel < 1e-5, (name, float(rel))


def test_select_keeps_only_used_prompts_and_columns():
    batch = pack(_episodes(), pad_id=0)
    part = batch.select([3, 4, 5])  # the second group only
    assert part.prompt_ids.shape == (1, 9)
    assert part.prompt_index.tolist() == [0, 0, 0]
    assert part.completion_ids.shape[1] == int(batch.completion_attn[3:6].sum(-1).max())
    model = _tiny_llama()
    whole, _ = completion_logprobs(model, batch)
    sub, _ = completion_logprobs(model, part)
    T = sub.shape[1]
    torch.testing.assert_close(sub * part.completion_attn, whole[3:6, :T] * batch.completion_attn[3:6, :T])


def test_loss_mask_excludes_env_tokens_and_excluded_episodes():
    eps = _episodes()
    batch = pack(eps, pad_id=0, include=[i != 0 for i in range(len(eps))])
    assert batch.loss_mask[0].sum() == 0
    row = 5  # the multi-turn episode: env tokens at positions 2 and 3
    n = len(eps[row].completion_ids)
    assert batch.loss_mask[row, :n].tolist() == [float(m) for m in eps[row].completion_mask]


def test_chunked_lm_head_equals_one_piece_values_and_gradients():
    model = _tiny_llama()
    batch = pack(_episodes(), pad_id=0)
    weights = torch.randn(batch.loss_mask.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    results = {}
    for chunk in (0, 7):  # 9 sequences x 6 positions = 54 > 7: eight chunks, the last one short
        model.zero_grad()
        lp, ent = completion_logprobs(model, batch, temperature=0.6, with_entropy=True, chunk=chunk)
        (lp * weights).sum().backward()
        results[chunk] = (lp.detach(), ent, {n: p.grad.clone() for n, p in model.named_parameters()})
    torch.testing.assert_close(results[7][0], results[0][0])
    torch.testing.assert_close(results[7][1], results[0][1])
    for name, grad in results[0][2].items():
        torch.testing.assert_close(results[7][2][name], grad, msg=name)
    assert results[0][2]["lm_head.weight"].abs().sum() > 0
