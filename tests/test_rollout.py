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
    model, _ = tiny_model
    torch.manual_seed(0)
    prompts = _prompts(smollm2_tokenizer)
    gens = backend.generate(prompts, SamplingParams(temperature=0.8, top_p=0.9, max_new_tokens=10))
    _assert_trainer_recomputes(model, smollm2_tokenizer, prompts, gens, temperature=0.8)


def trainer_and_sampler_logprobs(model, tok, prompts, gens, temperature):
    """(the trainer's log-probs of the sampled tokens, the sampler's), over every generated token."""
    from r1gym.core.rollout import Episode

    eps = [Episode(group=i, task_index=i, prompt_ids=list(p), completion_ids=g.token_ids,
                   completion_mask=[1] * len(g.token_ids), sampler_logprobs=g.logprobs)
           for i, (p, g) in enumerate(zip(prompts, gens))]
    batch = pack(eps, tok.pad_token_id)
    with torch.no_grad():
        lp, _ = completion_logprobs(model, batch, temperature=temperature)
    m = batch.loss_mask.bool()
    return lp[m], batch.sampler_logprobs[m]


def _assert_trainer_recomputes(model, tok, prompts, gens, temperature):
    """The sampler's log-probs are what the trainer computes for the same tokens."""
    trainer, sampler = trainer_and_sampler_logprobs(model, tok, prompts, gens, temperature)
    torch.testing.assert_close(trainer, sampler, rtol=1e-4, atol=1e-4)


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


# -- the lean decoder ------------------------------------------------------------------------------------
def _tiny(kind: str, vocab: int):
    """A tiny random model of a Llama-family architecture (GQA; Qwen2 with q/k/v biases and an untied head)."""
    from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig, Qwen2Config

    torch.manual_seed(7)
    common = dict(vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    cfg = {
        "llama": lambda: LlamaConfig(**common, tie_word_embeddings=True),
        "qwen2": lambda: Qwen2Config(**common, tie_word_embeddings=False),
        "mistral": lambda: MistralConfig(**common, sliding_window=None),
    }[kind]()
    model = AutoModelForCausalLM.from_config(cfg).eval()
    if kind == "qwen2":  # make the q/k/v biases matter
        for layer in model.model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                torch.nn.init.normal_(proj.bias, std=0.5)
    return model


def _left_padded(rows, pad=0):
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :], mask[i, width - len(r) :] = torch.tensor(r), 1
    return ids, mask


@pytest.mark.parametrize("kind", ["llama", "qwen2", "mistral"])
def test_lean_decoder_gives_the_transformers_logits(kind):
    from r1gym.plugins.hf_rollout.lean import LeanDecoder

    model = _tiny(kind, vocab=97)
    decoder = LeanDecoder(model)
    prompts = [[5, 9, 11, 3, 8], [17, 2], [40, 41, 42]]
    ids, mask = _left_padded(prompts)
    steps = torch.tensor([[7, 8, 9, 10], [20, 21, 22, 23], [1, 2, 3, 4]])
    with torch.no_grad():
        logits, cache = decoder.prefill(ids, mask, room=steps.shape[1])
        ours = [logits]
        pos = mask.sum(-1)
        for t in range(steps.shape[1]):
            ours.append(decoder.decode(steps[:, t], pos + t, cache))
        for i, p in enumerate(prompts):  # each row alone, unpadded, through transformers
            seq = torch.tensor([p + steps[i].tolist()])
            ref = model(input_ids=seq).logits[0, len(p) - 1 :]
            for t, step_logits in enumerate(ours):
                torch.testing.assert_close(step_logits[i], ref[t], rtol=1e-4, atol=1e-4)


def test_lean_decoder_merges_active_lora_adapters():
    from peft import LoraConfig, get_peft_model

    from r1gym.plugins.hf_rollout.lean import LeanDecoder

    model = get_peft_model(_tiny("llama", vocab=97), LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.3)  # peft starts B at zero; make the adapter change the output
    model.eval()
    ids, mask = _left_padded([[5, 9, 11, 3]])
    with torch.no_grad():
        logits, _ = LeanDecoder(model).prefill(ids, mask, room=1)
        torch.testing.assert_close(logits[0], model(input_ids=ids).logits[0, -1], rtol=1e-4, atol=1e-4)
        with model.disable_adapter():
            assert not torch.allclose(logits[0], model(input_ids=ids).logits[0, -1], atol=1e-3)


def test_unsupported_models_fall_back_to_the_transformers_forward(smollm2_tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(smollm2_tokenizer), n_embd=32, n_layer=1, n_head=2)).eval()
    backend = HFBackend(model, smollm2_tokenizer)
    assert backend.decoder == "hf"
    gens = backend.generate(_prompts(smollm2_tokenizer), SamplingParams(temperature=0.0, max_new_tokens=4))
    assert all(len(g.token_ids) == 4 for g in gens)
    with pytest.raises(ValueError, match="model_type 'gpt2'"):
        HFBackend(model, smollm2_tokenizer, decoder="lean")
    with pytest.raises(ValueError, match="needs the lean decoder"):
        HFBackend(model, smollm2_tokenizer, dtype="bfloat16")
    with pytest.raises(ValueError, match="decoder must be one of"):
        HFBackend(model, smollm2_tokenizer, decoder="fast")


def test_lean_and_transformers_loops_agree_as_rows_finish(tiny_model):
    """Rows ending at different steps leave the cache in batches (COMPACT_SHARE); every row's tokens and
    log-probs stay what the transformers-forward loop gives."""
    model, tok = tiny_model
    prompts = [tok(t)["input_ids"] for t in ("a b c", "Hello there", "1 2 3 4 5", "x")] * 2
    params = SamplingParams(temperature=0.0, max_new_tokens=10)
    base = HFBackend(model, tok, decoder="hf").generate(prompts, params)
    # an EOS that some rows produce early and others late or never
    counts = {}
    for g in base:
        for t in set(g.token_ids):
            counts[t] = counts.get(t, 0) + 1
    end = max(counts, key=lambda t: (0 < counts[t] < len(prompts), -abs(counts[t] - len(prompts) // 2)))
    results = {}
    for decoder in ("lean", "hf"):
        backend = HFBackend(model, tok, decoder=decoder)
        backend.eos_ids = {end}
        results[decoder] = backend.generate(prompts, params)
    assert any(g.finish_reason == "stop" for g in results["lean"])
    for a, b in zip(results["lean"], results["hf"]):
        assert a.token_ids == b.token_ids and a.finish_reason == b.finish_reason
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)


def test_bf16_sampler_copy_is_close_and_follows_weight_sync(tiny_model):
    model, tok = tiny_model
    prompts = _prompts(tok)
    params = SamplingParams(temperature=0.0, max_new_tokens=6)
    fp32 = HFBackend(model, tok).generate(prompts, params)
    backend = HFBackend(model, tok, dtype="bfloat16")
    bf16 = backend.generate(prompts, params)
    first = [g.logprobs[0] for g in fp32]
    assert [g.logprobs[0] for g in bf16] == pytest.approx(first, abs=0.05)  # bf16 rounding, same distribution
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(-1.0)  # an "optimizer step" that changes every next-token choice
    stale = backend.generate(prompts, params)
    backend.sync_weights(model)
    synced = backend.generate(prompts, params)
    assert [g.token_ids for g in stale] == [g.token_ids for g in bf16]  # the copy is only refreshed by a sync
    assert [g.token_ids for g in synced] == [g.token_ids for g in HFBackend(model, tok).generate(prompts, params)]


@pytest.mark.parametrize("dtype", [None, "bfloat16"])
def test_packed_weights_sample_what_plain_weights_do_and_follow_weight_sync(tiny_model, dtype):
    """``pack_weights=true`` is a copy in oneDNN's layout, in fp32 too: same tokens and log-probs as plain
    weights, and stale until the trainer's sync, like the bf16 copy. ``auto`` (the default) packs only the
    bf16 copy; fp32 keeps sharing the trainer's tensors."""
    from r1gym.core import onednn

    if not onednn.can_pack():
        pytest.skip("this torch build cannot pack linear weights for oneDNN (torch.ops.mkldnn._reorder_linear_weight)")
    model, tok = tiny_model
    prompts = _prompts(tok)
    params = SamplingParams(temperature=0.0, max_new_tokens=6)
    plain = HFBackend(model, tok, dtype=dtype, pack_weights=False)
    packed = HFBackend(model, tok, dtype=dtype, pack_weights=True)
    assert plain.lean.pack_rows is None and packed.lean.pack_rows == packed.batch_size
    assert HFBackend(model, tok, dtype=dtype).lean.pack_rows == (None if dtype is None else packed.batch_size)
    assert packed.lean.weights[1][0].o[0].is_mkldnn and packed.lean.weights[3].is_mkldnn
    a, b = plain.generate(prompts, params), packed.generate(prompts, params)
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    for x, y in zip(a, b):
        assert x.logprobs == pytest.approx(y.logprobs, abs=1e-4 if dtype is None else 2e-2)
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(-1.0)  # an "optimizer step" that changes every next-token choice
    stale = packed.generate(prompts, params)
    packed.sync_weights(model)
    plain.sync_weights(model)
    assert [g.token_ids for g in stale] == [g.token_ids for g in b]
    assert [g.token_ids for g in packed.generate(prompts, params)] == [
        g.token_ids for g in plain.generate(prompts, params)]
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(-1.0)  # the shared fixture's weights as they were


def test_pack_weights_takes_auto_true_or_false(tiny_model):
    model, tok = tiny_model
    with pytest.raises(ValueError, match=r"pack_weights must be auto, true or false, got 'yes'"):
        HFBackend(model, tok, pack_weights="yes")


def test_min_new_tokens_bans_eos_until_then(tiny_model):
    model, tok = tiny_model
    prompts = _prompts(tok)
    backend = HFBackend(model, tok)
    base = backend.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=6))
    backend.eos_ids = {base[0].token_ids[0]}  # row 0 would stop at once
    for mode in ("loop", "generate"):
        backend.mode = mode
        short = backend.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=6))
        assert len(short[0].token_ids) == 1
        long = backend.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=6, min_new_tokens=3))
        assert len(long[0].token_ids) >= 3, mode


def test_sample_next_draws_from_the_tempered_distribution():
    torch.manual_seed(0)
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -3.0])
    n = 20000
    tok, _ = sample_next(logits.repeat(n, 1), 0.7, 0, 1.0)
    freq = torch.bincount(tok, minlength=5).float() / n
    expected = torch.softmax(logits / 0.7, -1)
    torch.testing.assert_close(freq, expected, atol=0.015, rtol=0)
    tok, _ = sample_next(logits.repeat(n, 1), 1.0, 0, 1.0, banned=torch.tensor([0]))
    assert 0 not in tok.tolist()


def test_top_p_nucleus_wider_than_the_candidates_is_exact():
    """A nearly flat distribution whose nucleus has ~450 tokens: more than the 64 candidates, so the sort path
    runs. Neighbouring probabilities differ by 0.2%, far above float rounding, so the nucleus is unambiguous."""
    from r1gym.plugins.hf_rollout.sampling import NUCLEUS_CANDIDATES

    torch.manual_seed(0)
    logits = torch.stack([(-0.002 * torch.arange(1000.0))[torch.randperm(1000)] for _ in range(4)])
    probs = torch.softmax(logits, -1)
    sp, _ = torch.sort(probs, -1, descending=True)
    keep_n = ((sp.cumsum(-1) - sp) < 0.5).sum(-1)
    assert int(keep_n.min()) > NUCLEUS_CANDIDATES
    tok, _ = sample_next(logits.repeat(500, 1), 1.0, 0, 0.5)
    for row in range(4):
        drawn = set(tok[row::4].tolist())
        allowed = set(torch.nonzero(probs[row] >= sp[row, keep_n[row] - 1]).squeeze(-1).tolist())
        assert drawn <= allowed and len(allowed) == int(keep_n[row])


def test_reward_workers_step_envs_concurrently_and_keep_the_order():
    import threading

    from r1gym.core.rollout import Completion, _step_all

    barrier = threading.Barrier(4, timeout=10)  # breaks (and the test fails) unless 4 steps run at once

    class Env:
        def __init__(self, i):
            self.i = i

        def step(self, completion):
            barrier.wait()
            return ([], float(self.i), True, False, {"text": str(completion)})

    out = _step_all([(Env(i), Completion(f"c{i}")) for i in range(8)], workers=4)
    assert [o[1] for o in out] == [float(i) for i in range(8)]
    assert [o[4]["text"] for o in out] == [f"c{i}" for i in range(8)]



# -- continuous batching ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def varied_model(smollm2_tokenizer):
    """A tiny random Llama whose greedy completions do not repeat one token (larger initial weights than the
    conftest model's), so an EOS chosen among them ends each row at a chosen step."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(7)
    cfg = LlamaConfig(vocab_size=len(smollm2_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, initializer_range=0.5)
    return AutoModelForCausalLM.from_config(cfg).eval(), smollm2_tokenizer


def _skewed_workload(model, tok):
    """8 prompts of different lengths, 2 rows each (a GRPO group), and EOS ids that end them at several-fold
    different lengths: each prompt's greedy completion ends at its target step (or earlier, where another
    row's EOS comes first); ``None`` runs to max_new_tokens."""
    texts = ["a b c", "Hello there", "1 2 3 4 5 6 7", "x", "What is 2 + 3?", "The quick brown fox", "ok", "9 8"]
    targets = [3, None, 8, None, 2, 16, None, 4]
    prompts = [tok(t)["input_ids"] for t in texts for _ in range(2)]
    params = SamplingParams(temperature=0.0, max_new_tokens=24)
    base = HFBackend(model, tok, continuous=False).generate(prompts, params)
    eos = {base[2 * i].token_ids[t - 1] for i, t in enumerate(targets) if t}
    return prompts, params, eos
@pytest.mark.parametrize("extra", [{}, {"min_new_tokens": 3}, {"stop": "stop"}, {"dtype": "bfloat16"}])
def test_continuous_batching_gives_the_static_paths_tokens_and_logprobs(varied_model, extra):
    """Greedy: every row's tokens, log-probs and finish reason are those of the chunked path, with rows
    refilled into slots that other prompts (of other lengths) held before. In bf16 the decoder keeps its
    keys transposed and multiplies whole cache buffers (masked), in both paths."""
    model, tok = varied_model
    prompts, params, end = _skewed_workload(model, tok)
    if extra.get("stop"):
        probe = HFBackend(model, tok, continuous=False)
        probe.eos_ids = end
        g = next(g for g in probe.generate(prompts, params) if len(g.token_ids) > 8)
        extra = {"stop": (tok.decode(g.token_ids[6:8]),)}
    dtype = extra.pop("dtype", None)
    params = SamplingParams(temperature=0.0, max_new_tokens=24, **extra)
    results = {}
    for continuous in (False, True):
        backend = HFBackend(model, tok, batch_size=4, continuous=continuous, dtype=dtype)
        assert backend.lean.keys_transposed == (dtype == "bfloat16")
        backend.eos_ids = end
        results[continuous] = backend.generate(prompts, params)
        results[continuous, "counts"] = dict(backend.counts)
    lengths = [len(g.token_ids) for g in results[False]]
    assert min(lengths) * 3 <= max(lengths)  # the workload is skewed
    for a, b in zip(results[True], results[False]):
        assert a.token_ids == b.token_ids and a.finish_reason == b.finish_reason
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
    if extra.get("min_new_tokens"):
        assert min(len(g.token_ids) for g in results[True]) >= 3
    if extra.get("stop"):
        assert any(g.finish_reason == "stop" and g.text.endswith(extra["stop"][0]) for g in results[True])
    # rows were refilled: fewer decode steps than chunks of 4 (equal prompts together) that each run to their
    # longest row
    static, cont = results[False, "counts"], results[True, "counts"]
    order = sorted(range(len(prompts)), key=lambda i: (tuple(prompts[i]), i))
    chunks = [[lengths[i] for i in order[j : j + 4]] for j in range(0, len(order), 4)]
    assert static["decode_steps"] == sum(max(c) - 1 for c in chunks)
    assert cont["decode_steps"] < static["decode_steps"]
    assert cont["prefills"] > len(chunks) // 2  # more than one refill


def test_continuous_batching_samples_what_the_trainer_recomputes(varied_model):
    model, tok = varied_model
    prompts, _, end = _skewed_workload(model, tok)
    backend = HFBackend(model, tok, batch_size=4, continuous=True)
    backend.eos_ids = end
    torch.manual_seed(0)
    gens = backend.generate(prompts, SamplingParams(temperature=0.8, top_p=0.9, max_new_tokens=16))
    assert backend.counts["prefills"] > 1
    _assert_trainer_recomputes(model, tok, prompts, gens, temperature=0.8)


def test_continuous_switch_needs_the_lean_decoder(tiny_model, smollm2_tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    model, tok = tiny_model
    assert HFBackend(model, tok, continuous="auto").continuous and not HFBackend(model, tok).continuous
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(smollm2_tokenizer), n_embd=32, n_layer=1, n_head=2)).eval()
    assert not HFBackend(gpt2, smollm2_tokenizer, continuous="auto").continuous  # the chunked path, logged
    with pytest.raises(ValueError, match="continuous=true needs the lean decoder"):
        HFBackend(gpt2, smollm2_tokenizer, continuous=True)
    with pytest.raises(ValueError, match="must be auto, true or false"):
        HFBackend(model, tok, continuous="yes")
    with pytest.raises(ValueError, match=r"refill_share must be in \(0, 1\]"):
        HFBackend(model, tok, refill_share=0)


def test_sample_next_bans_only_the_rows_given():
    logits = torch.tensor([[5.0, 1.0, 0.0]]).repeat(4, 1)
    rows = torch.tensor([True, False, True, False])
    for temperature in (0.0, 1.0):
        tok, lp = sample_next(logits, temperature, 0, 1.0, torch.tensor([0]), rows)
        assert 0 not in tok[rows].tolist()
        if temperature == 0.0:
            assert tok[~rows].tolist() == [0, 0]
        expected = torch.log_softmax(logits[0] / max(temperature, 1.0), -1)
        torch.testing.assert_close(lp, expected[tok])
