"""Chat completions from a local causal LM: what ``r1gym serve`` and the local LLM judge run on.

:class:`ChatModel` renders chat messages with the tokenizer's chat template, generates with
``model.generate`` (left-padded batches, greedy at ``temperature=0``, nucleus sampling otherwise, optional stop
strings) and reports token counts and why generation stopped (``stop`` or ``length``), the fields an OpenAI
chat-completion response carries. One generation runs at a time (a lock): a CPU has no spare cores for two.

:func:`load_chat_model` accepts what a user would point it at: a built-in model name (``smollm2-135m``), a
Hugging Face model folder, a checkpoint folder written by ``r1gym train``, or a run folder (its latest
checkpoint, with the run's model settings, e.g. a LoRA base model).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Message = dict[str, str]
ROLES = ("system", "user", "assistant", "tool")


@dataclass
class ChatResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or a stop string) or "length"


def check_messages(messages: Any) -> list[Message]:
    """The messages as a list of ``{"role", "content"}`` dicts, or a ``ValueError`` that says what is wrong."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list of {role, content} objects")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"messages[{i}] must be an object with 'role' and 'content'")
        if m["role"] not in ROLES:
            raise ValueError(f"messages[{i}].role must be one of {', '.join(ROLES)}, got {m['role']!r}")
        content = m["content"]
        if isinstance(content, list):  # OpenAI's content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}].content must be a string or a list of text parts")
        out.append({"role": m["role"], "content": content})
    return out


class ChatModel:
    """A causal LM and its tokenizer, answering chat messages. ``name`` is what ``/v1/models`` lists."""

    def __init__(self, model: Any, tokenizer: Any, name: str, max_context: int | None = None):
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.tokenizer.padding_side = "left"
        self.max_context = max_context or int(getattr(model.config, "max_position_embeddings", 2048))
        self._lock = threading.Lock()

    def prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        ids = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "keys"):  # newer transformers return a BatchEncoding
            ids = ids["input_ids"]
        return list(ids)

    def option_logprobs(self, messages: Sequence[Message], options: Sequence[str]) -> list[float]:
        """How likely each of ``options`` is as the whole reply to ``messages`` (summed token log-probs):
        lets a small model choose among fixed answers (a judge's verdicts) without free generation."""
        import torch

        prompt = self.prompt_ids(messages)
        rows = [prompt + self.tokenizer(o, add_special_tokens=False)["input_ids"] for o in options]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        with self._lock, torch.inference_mode():
            logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
        return [float(logp[i, len(prompt) - 1 : len(r) - 1].sum()) for i, r in enumerate(rows)]

    def generate(
        self,
        batch: Sequence[Sequence[Message]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        seed: int | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_text: Callable[[int, str], None] | None = None,
    ) -> list[ChatResult]:
        """Answer each conversation of ``batch``. ``should_stop`` is polled every token (a client that went
        away); ``on_text(row, new_text)`` streams text as it is decoded (rows are decoded whole at the end
        otherwise)."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        prompts = [self.prompt_ids(m) for m in batch]
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        max_new = max(1, min(max_tokens, self.max_context - width))
        sent = [""] * len(prompts)
        tok = self.tokenizer

        class Watch(StoppingCriteria):
            """Streams new text and stops at a stop string or when the caller says so."""

            def __call__(self, ids: Any, scores: Any, **kwargs: Any) -> Any:
                done = torch.zeros(ids.shape[0], dtype=torch.bool)
                for row in range(ids.shape[0] if stop or on_text is not None else 0):
                    text = tok.decode(ids[row, width:], skip_special_tokens=True)
                    if stop and any(s in text for s in stop):
                        done[row] = True
                    if on_text is not None and len(text) > len(sent[row]) and not text.endswith("\ufffd"):
                        on_text(row, text[len(sent[row]):])
                        sent[row] = text
                if should_stop is not None and should_stop():
                    done[:] = True
                return done

        kwargs: dict[str, Any] = {"max_new_tokens": max_new, "pad_token_id": pad,
                                  "stopping_criteria": StoppingCriteriaList([Watch()])}
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with self._lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            out = self.model.generate(input_ids=input_ids, attention_mask=attention, **kwargs)
        results = []
        eos = {t for t in (self.tokenizer.eos_token_id, pad) if t is not None}
        for row, prompt in enumerate(prompts):
            new = out[row, width:].tolist()
            ended = next((i for i, t in enumerate(new) if t in eos), None)
            if ended is not None:
                new = new[:ended]
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            cut = min((text.find(s) for s in stop if s in text), default=-1)
            if cut >= 0:
                text = text[:cut]
            finish = "stop" if ended is not None or cut >= 0 else "length"
            if on_text is not None and len(text) > len(sent[row]):
                on_text(row, text[len(sent[row]):])
            results.append(ChatResult(text, len(prompt), len(new), finish))
        return results


def load_chat_model(name_or_path: str, *, name: str | None = None, dtype: str = "float32") -> ChatModel:
    """A :class:`ChatModel` for a built-in name, a model folder, a checkpoint folder or a run folder."""
    from r1gym.core.models import load_model, load_tokenizer

    path = Path(name_or_path).expanduser()
    if path.is_dir() and not (path / "config.json").exists():
        from omegaconf import OmegaConf

        from r1gym.core.evaluation import resolve_checkpoint
        from r1gym.core.models import load_policy

        ckpt, run = resolve_checkpoint(str(path))
        if run is not None:
            model_cfg = OmegaConf.load(run / "config.yaml").model
            model, tok = load_policy(model_cfg, str(ckpt))
            if hasattr(model, "merge_and_unload"):  # LoRA: serve the merged weights
                model = model.merge_and_unload()
            return ChatModel(model, tok, name or path.name)
        path = ckpt
    model = load_model(str(path) if path.exists() else name_or_path, dtype=dtype)
    tok = load_tokenizer(str(path) if path.exists() else name_or_path)
    return ChatModel(model, tok, name or (path.name if path.exists() else name_or_path))
