"""Rendering episodes to tokens: the chat template, R1-Zero's plain template, and multi-turn continuations
that never re-tokenise what the model generated."""

from __future__ import annotations

import pytest

from r1gym.core.prompts import PromptRenderer

CONVERSATION = [
    {"role": "system", "content": "Think, then answer."},
    {"role": "user", "content": "What is 2 + 3?"},
]


def test_chat_format_uses_the_tokenizer_template(smollm2_tokenizer):
    r = PromptRenderer(smollm2_tokenizer, "chat")
    text = r.render(CONVERSATION)
    assert text == smollm2_tokenizer.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    assert r.encode(CONVERSATION) == smollm2_tokenizer(text, add_special_tokens=False)["input_ids"]


def test_r1_zero_format_is_the_papers_plain_template(smollm2_tokenizer):
    r = PromptRenderer(smollm2_tokenizer, "r1_zero")
    assert r.render(CONVERSATION) == "Think, then answer.\nUser: What is 2 + 3?\nAssistant:"


@pytest.mark.parametrize("fmt", ["chat", "r1_zero"])
def test_continuation_extends_the_context_exactly(smollm2_tokenizer, fmt):
    tok = smollm2_tokenizer
    r = PromptRenderer(tok, fmt)
    answer = " <think> 2 + 3 = 6 </think> <answer> 6 </answer>"
    generated = tok(answer, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if fmt == "chat" else [])
    after = CONVERSATION + [{"role": "assistant", "content": answer}, {"role": "user", "content": "6 is wrong. Try again."}]
    context = r.encode(CONVERSATION) + generated + r.continuation(CONVERSATION, after, generated)
    # the context is the full conversation rendered with a generation prompt, token for token in text
    assert tok.decode(context) == r.render(after)
    # and the generated ids are kept as they were sampled
    n = len(r.encode(CONVERSATION))
    assert context[n : n + len(generated)] == generated


def test_chat_format_without_template_says_what_to_use():
    class NoTemplate:
        chat_template = None

    with pytest.raises(ValueError, match="model.prompt_format=r1_zero"):
        PromptRenderer(NoTemplate(), "chat")


def test_unknown_format_lists_known_ones(smollm2_tokenizer):
    with pytest.raises(ValueError, match="known: chat, r1_zero"):
        PromptRenderer(smollm2_tokenizer, "plain")
