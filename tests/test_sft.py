"""The SFT trainer (r1gym.core.sft) on tiny random Llamas with the SmolLM2 tokenizer: answer masks checked
by hand, packing that keeps examples apart, gradient accumulation equal to one batch, memorisation, exact
resume, dropped and malformed records, and a run through the command line."""

from __future__ import annotations

import copy
import json
import time

import pytest
import torch

from r1gym.core.config import compose
from r1gym.core.prompts import PromptRenderer
from r1gym.core.sft import ExampleSampler, SFTTrainer, collate, encode, layout, nll_sum, read_conversations

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "It is 4."},
    {"role": "user", "content": "And 3+3?"},
    {"role": "assistant", "content": "6"},
]

FACTS = [  # a tiny set to memorise: answers with no pattern the random model could guess
    {"prompt": "Code word one?", "completion": "zebra lantern"},
    {"prompt": "Code word two?", "completion": "copper violin"},
    {"messages": [{"role": "user", "content": "Code word three?"}, {"role": "assistant", "content": "maple orbit"}]},
    {"prompt": "Code word four?", "completion": "quiet harbor"},
]


def _write(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def _cfg(model_dir, run_dir, data, *extra):
    return compose([
        "stage=sft", f"model.name_or_path={model_dir}", f"sft.data=['{data}']", "logger=jsonl_only",
        f"run_dir={run_dir}", "trainer.threads=1", "trainer.matmul=torch", "trainer.save_every=100",
        "sft.optim.schedule=constant", "sft.optim.lr=3e-3", *extra,
    ])


def _spans(tok, ex):
    """The decoded runs of loss tokens."""
    spans, cur = [], []
    for i, m in zip(ex.ids, ex.mask):
        if m:
            cur.append(i)
        elif cur:
            spans, cur = [*spans, tok.decode(cur)], []
    return spans + ([tok.decode(cur)] if cur else [])


# -- masks ---------------------------------------------------------------------------------------------
def test_assistant_mask_covers_answers_and_their_end_of_turn_only(smollm2_tokenizer):
    tok = smollm2_tokenizer
    ex = encode(PromptRenderer(tok, "chat"), CHAT, "assistant")
    assert _spans(tok, ex) == ["It is 4.<|im_end|>", "6<|im_end|>"]
    unmasked = tok.decode([i for i, m in zip(ex.ids, ex.mask) if not m])
    assert unmasked == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
                        "<|im_start|>assistant\n\n<|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n\n")
    everything = encode(PromptRenderer(tok, "chat"), CHAT, "all")
    assert everything.ids == ex.ids and everything.mask == [0] + [1] * (len(ex.ids) - 1)


def test_r1_zero_format_ends_the_last_answer_with_eos(smollm2_tokenizer):
    tok = smollm2_tokenizer
    ex = encode(PromptRenderer(tok, "r1_zero"), CHAT, "assistant")
    assert _spans(tok, ex) == [" It is 4.", f" 6{tok.eos_token}"]
    assert tok.decode(ex.ids).startswith("Be brief.\nUser: What is 2+2?\nAssistant: It is 4.\nUser:")


def test_a_template_that_breaks_prefixes_is_a_clear_error(smollm2_tokenizer):
    tok = copy.deepcopy(smollm2_tokenizer)
    tok.chat_template = ("{{ messages|length }}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}"
                         "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    renderer = PromptRenderer(tok, "chat")
    message = r"^data.jsonl:3: the first 2 message\(s\) do not render as a prefix.*sft.loss_on=all"
    with pytest.raises(ValueError, match=message):
        encode(renderer, CHAT, "assistant", "data.jsonl:3")
    assert sum(encode(renderer, CHAT, "all").mask) > 0  # the way out the message names


# -- reading data --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("line", "message"), [
    ("{not json", r"f.jsonl:2: invalid JSON"),
    ('{"prompt": "hi"}', r"f.jsonl:2: a prompt/completion record needs string field\(s\) completion"),
    ('{"messages": "hi"}', r"f.jsonl:2: 'messages' must be a non-empty list"),
    ('{"messages": [{"role": "user"}]}', r"f.jsonl:2: messages\[0\] needs a string 'role' and a string 'content'"),
    ('{"messages": [{"role": "user", "content": "hi"}]}', r"f.jsonl:2: no assistant message"),
    ('{"text": "hi"}', r"f.jsonl:2: a record needs 'messages' .* or 'prompt' and 'completion'; it has \['text'\]"),
])
def test_bad_records_name_file_line_and_what_is_missing(tmp_path, line, message):
    path = _write(tmp_path / "f.jsonl", [FACTS[0], line])
    with pytest.raises(ValueError, match=message):
        read_conversations([str(path)], need_assistant=True)


def test_reading_records_of_both_shapes(tmp_path):
    path = _write(tmp_path / "f.jsonl", FACTS[:3])
    got = read_conversations([str(path)], need_assistant=True)
    assert [w for w, _ in got] == [f"{path}:1", f"{path}:2", f"{path}:3"]
    assert got[0][1] == [{"role": "user", "content": "Code word one?"},
                         {"role": "assistant", "content": "zebra lantern"}]
    with pytest.raises(FileNotFoundError, match="missing.jsonl is not a file"):
        read_conversations([str(tmp_path / "missing.jsonl")], need_assistant=True)


# -- order and layout ----------------------------------------------------------------------------------
def test_sampler_walks_epochs_by_token_budget_and_resumes():
    lengths = [5, 3, 7, 2, 4]
    s = ExampleSampler(lengths, seed=3, epochs=1.6)  # 8 examples: one epoch and 3 of the next
    steps = []
    while batch := s.take(9):
        assert sum(lengths[i] for i in batch) <= 9 or len(batch) == 1
        steps.append(batch)
    flat = [i for b in steps for i in b]
    assert len(flat) == 8 and sorted(flat[:5]) == [0, 1, 2, 3, 4] and len(set(flat[5:])) == 3
    assert ExampleSampler(lengths, seed=3, epochs=1.6).count_steps(9) == len(steps)
    assert ExampleSampler(lengths, seed=3, epochs=1).take(100) != ExampleSampler(lengths, seed=4, epochs=1).take(100)
    t = ExampleSampler(lengths, seed=3, epochs=1.6)
    t.take(9)
    resumed = ExampleSampler(lengths, seed=3, epochs=1.6)
    resumed.load_state_dict(t.state_dict())
    assert [resumed.take(9) for _ in steps[1:]] == steps[1:]
    with pytest.raises(ValueError, match="trained on 5 examples, sft.data now has 4"):
        ExampleSampler(lengths[:4], 3, 1).load_state_dict(t.state_dict())


def test_layout_packs_rows_within_limits():
    from r1gym.core.sft import Example

    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, 40, (30,), generator=g).tolist()
    exs = [Example([1] * n, [0] + [1] * (n - 1), str(k)) for k, n in enumerate(lengths)]
    for packing in (True, False):
        micro = layout(exs, packing=packing, row_tokens=40, micro_batch_tokens=100)
        rows = [r for mb in micro for r in mb]
        assert sorted(e.where for r in rows for e in r) == sorted(e.where for e in exs)
        assert all(sum(map(len, r)) <= 40 for r in rows)
        assert all(len(mb) * max(sum(map(len, r)) for r in mb) <= 100 for mb in micro)
        assert (len(rows) < len(exs)) == packing


# -- the loss ------------------------------------------------------------------------------------------
def test_packed_loss_and_gradients_equal_one_by_one(tiny_model, smollm2_tokenizer):
    model, tok = tiny_model
    model.eval()
    renderer = PromptRenderer(tok, "chat")
    hello = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there, friend."}]
    exs = [encode(renderer, m, "assistant") for m in (CHAT, CHAT[1:3], hello)]
    n_loss = sum(sum(e.mask) for e in exs)

    def loss_and_grad(micro_batches, packing):
        model.zero_grad()
        total = 0.0
        for rows in micro_batches:
            part = nll_sum(model, collate(rows, tok.pad_token_id, packing=packing), chunk=16) / n_loss
            part.backward()
            total += float(part.detach())
        return total, model.get_input_embeddings().weight.grad.clone()

    one_by_one = loss_and_grad([[[e]] for e in exs], False)
    packed_micro = layout(exs, packing=True, row_tokens=200, micro_batch_tokens=200)
    assert len(packed_micro) == 1 and len(packed_micro[0][0]) >= 2  # several examples share a row
    padded_micro = layout(exs, packing=False, row_tokens=200, micro_batch_tokens=400)
    for micro, packing in ((packed_micro, True), (padded_micro, False)):
        loss, grad = loss_and_grad(micro, packing)
        assert loss == pytest.approx(one_by_one[0], abs=1e-4)
        torch.testing.assert_close(grad, one_by_one[1], atol=1e-6, rtol=1e-4)
    # the test can fail: the same row without restarting positions lets examples attend to each other
    leaky = collate(packed_micro[0], tok.pad_token_id, packing=False)
    assert abs(float(nll_sum(model, leaky).detach()) / n_loss - one_by_one[0]) > 1e-3


@pytest.mark.parametrize("extra", [
    ("sft.packing=false", "sft.micro_batch_tokens=40"),  # one example per micro-batch: accumulation
    ("sft.packing=true", "sft.micro_batch_tokens=4096"),
])
def test_a_step_is_the_same_whatever_the_layout(tiny_model_dir, tmp_path, extra):
    data = _write(tmp_path / "d.jsonl", FACTS)
    one = ("sft.epochs=1", "sft.packing=false", "sft.micro_batch_tokens=4096")
    base = SFTTrainer(_cfg(tiny_model_dir, tmp_path / "a", data, *one), tmp_path / "a")
    other = SFTTrainer(_cfg(tiny_model_dir, tmp_path / "b", data, "sft.epochs=1", *extra), tmp_path / "b")
    results = []
    for t in (base, other):
        t.setup()
        results.append(t.train_step())
    assert results[0]["examples"] == results[1]["examples"] == 4.0
    assert results[1]["loss"] == pytest.approx(results[0]["loss"], abs=1e-5)
    assert results[1]["grad_norm"] == pytest.approx(results[0]["grad_norm"], rel=1e-4)


# -- runs ----------------------------------------------------------------------------------------------
def test_sft_memorises_a_tiny_set(tiny_model_dir, tmp_path):
    data = _write(tmp_path / "d.jsonl", FACTS)
    summary = SFTTrainer(_cfg(tiny_model_dir, tmp_path, data, "sft.epochs=30", "sft.batch_tokens=256",
                                 "sft.optim.lr=3e-2"), tmp_path).train()
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert summary["status"] == "finished" and summary["step"] == len(losses) == summary["total_steps"] >= 15
    assert losses[-1] < 0.3 * losses[0], losses


@pytest.fixture(scope="module")
def dropout_model_dir(tmp_path_factory, smollm2_tokenizer):
    """A tiny Llama with attention dropout, so that resuming must also restore the torch RNG."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    tok = smollm2_tokenizer
    torch.manual_seed(7)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, attention_dropout=0.3, tie_word_embeddings=True,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    out = tmp_path_factory.mktemp("tiny-dropout-llama")
    AutoModelForCausalLM.from_config(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_resume_after_a_kill_gives_the_uninterrupted_weights(dropout_model_dir, tmp_path, monkeypatch):
    data = _write(tmp_path / "d.jsonl", FACTS * 2)
    extra = ("sft.epochs=2", "sft.batch_tokens=120", "trainer.save_every=2", "sft.optim.schedule=cosine")
    whole = SFTTrainer(_cfg(dropout_model_dir, tmp_path / "whole", data, *extra), tmp_path / "whole")
    assert whole.train()["step"] == whole.total_steps >= 4

    class Killed(Exception):
        pass

    real_step, calls = SFTTrainer.train_step, []

    def dying(self):
        calls.append(1)
        if len(calls) == 4:
            raise Killed
        return real_step(self)

    monkeypatch.setattr(SFTTrainer, "train_step", dying)
    cfg = _cfg(dropout_model_dir, tmp_path / "cut", data, *extra)
    with pytest.raises(Killed):
        SFTTrainer(cfg, tmp_path / "cut").train()
    monkeypatch.setattr(SFTTrainer, "train_step", real_step)
    assert (tmp_path / "cut" / "checkpoints" / "latest").read_text() == "step_000002"
    resumed = SFTTrainer(cfg, tmp_path / "cut")
    summary = resumed.train()
    assert summary["status"] == "finished" and summary["step"] == whole.total_steps
    expected = whole.model.state_dict()
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], atol=0, rtol=0, msg=name)
    metrics = [(tmp_path / d / "metrics.jsonl").read_text().splitlines() for d in ("whole", "cut")]
    assert [json.loads(a)["loss"] for a in metrics[0]] == [json.loads(b)["loss"] for b in metrics[1]]


def test_too_long_examples_are_dropped_and_counted(tiny_model_dir, tmp_path):
    long = {"prompt": "Tell me everything.", "completion": " ".join(["word"] * 80)}
    data = _write(tmp_path / "d.jsonl", [*FACTS, long, long])
    trainer = SFTTrainer(_cfg(tiny_model_dir, tmp_path, data, "sft.max_length=64"), tmp_path)
    trainer.setup()
    assert trainer.stats["dropped_too_long"] == 2 and trainer.stats["examples"] == 4
    assert max(map(len, trainer.examples)) <= 64
    only_long = _write(tmp_path / "long.jsonl", [long])
    with pytest.raises(ValueError, match="1 of 1 are longer than sft.max_length=64"):
        SFTTrainer(_cfg(tiny_model_dir, tmp_path / "x", only_long, "sft.max_length=64"), tmp_path / "x").setup()


def test_lora_sft_trains_and_saves_only_the_adapters(tiny_model_dir, tmp_path):
    pytest.importorskip("peft", reason="LoRA needs the lora extra (peft)")
    data = _write(tmp_path / "d.jsonl", FACTS)
    cfg = _cfg(tiny_model_dir, tmp_path, data, "model.lora.r=4", "sft.max_steps=2", "sft.batch_tokens=100")
    trainer = SFTTrainer(cfg, tmp_path)
    trainer.setup()
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()  # sets up again: the same start, nothing trained yet
    after = dict(trainer.model.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n].detach())}
    assert changed and all("lora_" in n for n in changed)
    ckpt = tmp_path / "checkpoints" / "step_000002"
    assert (ckpt / "adapter_model.safetensors").exists() and not (ckpt / "model.safetensors").exists()


def test_r1gym_train_stage_sft_through_the_cli(tiny_model_dir, tmp_path):
    from r1gym.core.cli import main

    data = _write(tmp_path / "d.jsonl", [*FACTS, {"prompt": "Long?", "completion": "x " * 200}])
    run = tmp_path / "run"
    started = time.perf_counter()
    assert main(["train", "stage=sft", f"model.name_or_path={tiny_model_dir}", f"sft.data=['{data}']",
                 "sft.max_steps=2", "sft.batch_tokens=64", "sft.max_length=128", "logger=jsonl_only",
                 "trainer.threads=1", f"run_dir={run}"]) == 0
    wall = time.perf_counter() - started
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stage"] == "sft" and manifest["status"] == "finished" and manifest["step"] == 2
    assert manifest["dropped_too_long"] == 1 and manifest["examples"] == 4
    assert manifest["outputs"]["checkpoint"].endswith("step_000002")
    assert (run / "checkpoints" / "step_000002" / "model.safetensors").exists()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert {"loss", "lr", "grad_norm", "tokens", "loss_tokens", "time/step", "epoch"} <= set(rows[0])
    for r in rows:  # a step's time was measured inside the run, and the throughput is its tokens over it
        assert 0 < r["time/step"] <= wall and r["tokens"] > 0
        assert r["tokens_per_s"] == pytest.approx(r["tokens"] / r["time/step"])
