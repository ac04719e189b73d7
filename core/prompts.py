"""Turning an episode's chat messages into the token ids the policy reads.

Two formats:

* ``chat``: the tokenizer's own chat template (instruct models), with the generation prompt appended;
* ``r1_zero``: DeepSeek-R1-Zero's plain-text template for base models,
  ``"{system}\\nUser: {prompt}\\nAssistant:"`` (R1 paper, Table 1); later turns append
  ``"\\nUser: {reply}\\nAssistant:"`` after the model's answer. ``generation_prompt`` is implied.

Multi-turn episodes never re-tokenise what the model generated: the context is the previous context, the
generated token ids, and the *continuation* — the template text between the end of the generated turn and
the next generation prompt — so training sees exactly the tokens the sampler produced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

PROMPT_FORMATS = ("chat", "r1_zero")


class PromptRenderer:
    def __init__(self, tokenizer: Any, prompt_format: str = "chat"):
        if prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"unknown prompt_format {prompt_format!r}; known: {', '.join(PROMPT_FORMATS)}")
        if prompt_format == "chat" and not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "model.prompt_format=chat needs a tokenizer with a chat template; this tokenizer has none "
                "(a base model?). Use model.prompt_format=r1_zero."
            )
        self.tokenizer, self.format = tokenizer, prompt_format

    def render(self, messages: Sequence[dict], *, generation_prompt: bool = True) -> str:
        if self.format == "chat":
            return self.tokenizer.apply_chat_template(
                list(messages), tokenize=False, add_generation_prompt=generation_prompt
            )
        text = ""
        for m in messages:
            role, content = m["role"], m["content"]
            if role == "system":
                text += content
            elif role == "assistant":  # the model's text follows "Assistant:" as it was generated
                text += content if content[:1].isspace() else f" {content}"
            else:  # user or tool: a new "User:" turn
                text += ("\n" if text else "") + f"User: {content}\nAssistant:"
        return text

    def encode(self, messages: Sequence[dict]) -> list[int]:
        return self._ids(self.render(messages))

    def continuation(self, before: Sequence[dict], after: Sequence[dict], generated_ids: Sequence[int]) -> list[int]:
        """Token ids to append after ``generated_ids`` so the context renders ``after`` with a generation prompt.

        ``before`` is the conversation the model answered; ``after`` is the env's next observation (it ends
        with the model's answer as an assistant message and the env's reply).
        """
        full = self.render(after)
        head = self.render(before)
        generated = self.tokenizer.decode(list(generated_ids), skip_special_tokens=False)
        if full.startswith(head + generated):
            return self._ids(full[len(head + generated) :])
        # The sampler stopped on a stop string or the template normalises the assistant text: close the
        # turn with the template's own closing text instead.
        assistant_turn = self.render(list(after)[: len(before) + 1], generation_prompt=False)[len(head) :]
        content = after[len(before)]["content"]
        closing = assistant_turn[assistant_turn.find(content) + len(content) :] if content in assistant_turn else ""
        rest = full[len(self.render(list(after)[: len(before) + 1], generation_prompt=False)) :]
        return self._ids(closing + rest)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]
