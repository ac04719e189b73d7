"""Supervised fine-tuning: the R1 pipeline's cold start, its SFT stage after rejection sampling, distillation.

Data (``sft.data``): JSONL files whose records are ``{"messages": [{"role", "content"}, ...]}`` or
``{"prompt", "completion"}`` (a user turn and an assistant turn). A conversation becomes text the same way
GRPO prompts do (:class:`~r1gym.core.prompts.PromptRenderer`, ``model.prompt_format``: the chat template, or
R1-Zero's plain template with EOS closing the last answer), then token ids.

Loss mask (``sft.loss_on``): ``all`` tokens, or only the ``assistant`` turns: each answer's content and its
end-of-turn token, never the system/user text nor the template's role headers. The answer spans come from
rendering the conversation prefix by prefix (up to the generation prompt before an answer, up to the end of
the answer) and taking token-length differences; a template or tokenizer that does not render or tokenize
prefixes as prefixes of the whole is an error naming the record (use ``sft.loss_on=all`` there).

A step: the sampler walks the data in a fresh seeded permutation per epoch and hands out examples while they
fit in ``sft.batch_tokens`` (real tokens, at least one example); the stream ends after ceil(epochs x N)
examples, so the number of steps is known before training (the LR schedule's length), capped by
``sft.max_steps``. The step's examples are laid out in micro-batches of about ``sft.micro_batch_tokens``
(padding included): with ``packing`` several examples share a row of at most ``max_length`` tokens, position
ids restart at each example and transformers' packed-sequence masking keeps attention inside each example
(checked at start-up); without packing each example is its own right-padded row. The loss is the mean over
the step's loss tokens: every micro-batch adds its token log-likelihood sum divided by the step's loss-token
count, so the gradient equals one big batch's whatever the layout. Examples longer than ``max_length`` are
dropped and counted, never truncated.

Kept from the GRPO trainer (the shared training core, :mod:`r1gym.core.training`): the run folder, loggers,
seeding, oneDNN linears, LoRA, the backends (one process, DDP, DeepSpeed), checkpoints that resume the same
trajectory (optimizer, schedule, data position, RNG). Dropped: evaluation on the env (SFT knows no
task; run ``r1gym eval`` on the checkpoint).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from r1gym.core import distributed
from r1gym.core.batch import _body, _head_logprobs
from r1gym.core.jsonl import iter_jsonl
from r1gym.core.plugins import PluginHost
from r1gym.core.prompts import PromptRenderer
from r1gym.core.registry import pick
from r1gym.core.runtime import build_scheduler  # noqa: F401 -- re-exported
from r1gym.core.training import TrainerShell

log = logging.getLogger(__name__)

LOGPROB_CHUNK = 1024  # loss positions per LM-head chunk: the (positions x vocabulary) logits never exist at once


# -- data -----------------------------------------------------------------------------------------------
@dataclass
class Example:
    ids: list[int]
    mask: list[int]  # 1 where the token is a loss target (predicted from the one before it)
    where: str  # "file:line"

    def __len__(self) -> int:
        return len(self.ids)


def to_messages(record: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """A record's conversation: its ``messages``, or ``prompt``/``completion`` as a user and an assistant turn."""
    if "messages" in record:
        msgs = record["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise ValueError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
        for j, m in enumerate(msgs):
            if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
                raise ValueError(f"{where}: messages[{j}] needs a string 'role' and a string 'content', "
                                 f"got {str(m)[:80]}")
        return [dict(m) for m in msgs]
    if "prompt" in record or "completion" in record:
        missing = [k for k in ("prompt", "completion") if not isinstance(record.get(k), str)]
        if missing:
            raise ValueError(f"{where}: a prompt/completion record needs string field(s) {', '.join(missing)}")
        return [{"role": "user", "content": record["prompt"]}, {"role": "assistant", "content": record["completion"]}]
    raise ValueError(f"{where}: a record needs 'messages' (a list of {{role, content}}) or 'prompt' and "
                     f"'completion'; it has {sorted(record) or 'no keys'}")


def read_conversations(paths: Sequence[str], *, need_assistant: bool) -> list[tuple[str, list[dict[str, Any]]]]:
    """``(file:line, messages)`` for every record of every file, checked before any model is loaded."""
    out = []
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"sft.data: {path} is not a file")
        for lineno, record in iter_jsonl(path):
            where = f"{path}:{lineno}"
            msgs = to_messages(record, where)
            if need_assistant and not any(m["role"] == "assistant" for m in msgs):
                raise ValueError(f"{where}: no assistant message, so nothing to learn with sft.loss_on=assistant")
            out.append((where, msgs))
    if not out:
        raise ValueError(f"sft.data {list(paths)} holds no records")
    return out


def _prefix_len(renderer: PromptRenderer, msgs: list[dict], generation_prompt: bool, text: str, ids: list[int],
                where: str) -> int:
    """Tokens of the conversation ``msgs`` rendered alone, checked to be a prefix of the whole (``text``, ``ids``)."""
    hint = "this template cannot mark answers; use sft.loss_on=all (or a template that renders prefixes as prefixes)"
    try:
        head = renderer.render(msgs, generation_prompt=generation_prompt)
    except Exception as exc:  # noqa: BLE001 -- a template error is about this record
        raise ValueError(f"{where}: the template failed on the first {len(msgs)} message(s) ({exc}); {hint}") from None
    if not text.startswith(head):
        raise ValueError(f"{where}: the first {len(msgs)} message(s) do not render as a prefix of the whole "
                         f"conversation; {hint}")
    head_ids = renderer.tokenizer(head, add_special_tokens=False)["input_ids"]
    if ids[: len(head_ids)] != head_ids:
        raise ValueError(f"{where}: the first {len(msgs)} message(s) do not tokenize as a prefix of the whole "
                         f"conversation (a token spans the boundary); {hint}")
    return len(head_ids)


def _assistant_mask(renderer: PromptRenderer, msgs: list[dict], text: str, ids: list[int], where: str) -> list[int]:
    eos, mask = renderer.tokenizer.eos_token_id, [0] * len(ids)
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        start = _prefix_len(renderer, msgs[:i], True, text, ids, where)
        if i == len(msgs) - 1 and renderer.format != "chat":  # the EOS that encode() appended closes the answer
            end = len(ids)
        else:
            end = _prefix_len(renderer, msgs[: i + 1], False, text, ids, where)
        span = ids[start:end]
        if eos in span:  # the turn ends at its end-of-turn token; the template's text after it ("\n") is no answer
            end = start + len(span) - span[::-1].index(eos)
        mask[start:end] = [1] * (end - start)
    return mask


def _all_mask(renderer: PromptRenderer, msgs: list[dict], text: str, ids: list[int], where: str) -> list[int]:
    return [0] + [1] * (len(ids) - 1)  # the first token is predicted by nothing


MASKS: dict[str, Callable[..., list[int]]] = {"assistant": _assistant_mask, "all": _all_mask}


def encode(renderer: PromptRenderer, msgs: list[dict], loss_on: str, where: str = "<example>") -> Example:
    """Token ids of a conversation and its loss mask (``loss_on``: ``assistant`` or ``all``)."""
    text = renderer.render(msgs, generation_prompt=False)
    if renderer.format != "chat" and msgs[-1]["role"] == "assistant":  # plain template: EOS ends the answer
        text += renderer.tokenizer.eos_token
    ids = renderer.tokenizer(text, add_special_tokens=False)["input_ids"]
    return Example(ids, pick(MASKS, loss_on, "sft.loss_on")(renderer, msgs, text, ids, where), where)


# -- order and layout -----------------------------------------------------------------------------------
class ExampleSampler:
    """Examples in a fresh seeded permutation per epoch, handed out a token budget at a time; the stream ends
    after ceil(epochs x N) examples. Its position is part of every checkpoint."""

    def __init__(self, lengths: Sequence[int], seed: int, epochs: float):
        self.lengths, self.seed, self.pos = list(lengths), seed, 0
        self.end = math.ceil(epochs * len(self.lengths))
        self._epoch, self._order = -1, np.empty(0, dtype=np.int64)

    def _index(self, pos: int) -> int:
        epoch, i = divmod(pos, len(self.lengths))
        if epoch != self._epoch:
            self._epoch, self._order = epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.lengths))
        return int(self._order[i])

    def take(self, budget: int) -> list[int]:
        """The next examples while their tokens fit in ``budget`` (at least one; none once the stream ends)."""
        out, used = [], 0
        while self.pos < self.end:
            i = self._index(self.pos)
            if out and used + self.lengths[i] > budget:
                break
            out.append(i)
            used += self.lengths[i]
            self.pos += 1
        return out

    def count_steps(self, budget: int) -> int:
        """How many ``take(budget)`` calls the whole stream lasts."""
        probe, n = copy.copy(self), 0
        probe.pos = 0
        while probe.take(budget):
            n += 1
        return n

    @property
    def epoch(self) -> float:
        return self.pos / len(self.lengths)

    def state_dict(self) -> dict[str, int]:
        return {"pos": self.pos, "num_examples": len(self.lengths)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state["num_examples"]) != len(self.lengths):
            raise ValueError(f"the checkpoint was trained on {state['num_examples']} examples, sft.data now has "
                             f"{len(self.lengths)}: resuming needs the same data")
        self.pos = int(state["pos"])


def layout(examples: Sequence[Example], *, packing: bool, row_tokens: int,
           micro_batch_tokens: int) -> list[list[list[Example]]]:
    """A step's examples as micro-batches of rows of examples. Longest first (the step's gradient is a sum, so
    order within a step does not matter): with ``packing``, first-fit into rows of ``row_tokens``; then rows
    go together while rows x longest row <= ``micro_batch_tokens`` (always at least one row)."""
    ordered = sorted(examples, key=len, reverse=True)
    if packing:
        rows: list[list[Example]] = []
        room: list[int] = []
        for e in ordered:
            j = next((j for j, r in enumerate(room) if len(e) <= r), None)
            if j is None:
                rows.append([e])
                room.append(row_tokens - len(e))
            else:
                rows[j].append(e)
                room[j] -= len(e)
        rows.sort(key=lambda r: sum(map(len, r)), reverse=True)
    else:
        rows = [[e] for e in ordered]
    micro: list[list[list[Example]]] = []
    for row in rows:
        if micro and (len(micro[-1]) + 1) * sum(map(len, micro[-1][0])) <= micro_batch_tokens:
            micro[-1].append(row)
        else:
            micro.append([row])
    return micro


@dataclass
class MicroBatch:
    input_ids: torch.Tensor  # (B, T)
    position_ids: torch.Tensor  # (B, T): restarting at 0 for each example (and for the padding) when packed
    attention_mask: torch.Tensor | None  # (B, T) for padded rows; None when packed (positions define the blocks)
    loss_mask: torch.Tensor  # (B, T) bool: the token is a loss target

    @property
    def tokens(self) -> int:
        return int(self.input_ids.numel())


def collate(rows: Sequence[Sequence[Example]], pad_id: int, *, packing: bool, device: Any = "cpu") -> MicroBatch:
    T = max(sum(map(len, r)) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    pos = torch.zeros((len(rows), T), dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.bool)
    attn = torch.zeros((len(rows), T), dtype=torch.long)
    for b, row in enumerate(rows):
        s = 0
        for e in row:
            ids[b, s : s + len(e)] = torch.tensor(e.ids)
            pos[b, s : s + len(e)] = torch.arange(len(e))
            mask[b, s : s + len(e)] = torch.tensor(e.mask, dtype=torch.bool)
            s += len(e)
        attn[b, :s] = 1
        pos[b, s:] = torch.arange(T - s) if packing else torch.arange(s, T)  # padding: a block of its own
    return MicroBatch(ids.to(device), pos.to(device), None if packing else attn.to(device), mask.to(device))


def nll_sum(model: Any, mb: MicroBatch, chunk: int = LOGPROB_CHUNK) -> torch.Tensor:
    """Sum of -log p(token) over the micro-batch's loss tokens; the LM head runs on those positions only."""
    hidden = _body(model)(input_ids=mb.input_ids, attention_mask=mb.attention_mask, position_ids=mb.position_ids,
                          use_cache=False).last_hidden_state
    targets = mb.loss_mask[:, 1:]  # position t predicts token t + 1
    h, y = hidden[:, :-1][targets], mb.input_ids[:, 1:][targets]
    lp, _ = _head_logprobs(model, h[None], y[None], 1.0, False, chunk)
    return -lp.sum()


class NLLSum(torch.nn.Module):
    """:func:`nll_sum` of ``model`` as one module call, for DeepSpeed's engine (which must see every forward:
    see :class:`r1gym.core.batch.CompletionLogprobs`)."""

    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def forward(self, mb: MicroBatch) -> torch.Tensor:
        return nll_sum(self.model, mb)


def check_packing(model: Any) -> None:
    """Two examples packed in one row must give the hidden states each gives alone; transformers builds the
    block-diagonal mask from restarting position ids (its masking_utils for sdpa/eager, varlen for flash
    attention); older versions or other attention implementations may not, and then this fails loudly."""
    body, device = _body(model), next(model.parameters()).device
    a, b = torch.arange(3, 10, device=device)[None], torch.arange(20, 25, device=device)[None]
    pos = torch.cat([torch.arange(7), torch.arange(5)]).to(device)[None]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        packed = body(input_ids=torch.cat([a, b], 1), position_ids=pos, use_cache=False).last_hidden_state
        alone = torch.cat([body(input_ids=x, use_cache=False).last_hidden_state for x in (a, b)], 1)
    model.train(was_training)
    err = float((packed - alone).abs().max() / alone.abs().max().clamp(min=1e-6))
    if not err < 1e-2:
        raise RuntimeError(f"packed examples see each other with this transformers version / attention "
                           f"implementation (relative difference {err:.3g}); set sft.packing=false or "
                           f"upgrade transformers")


# -- the trainer ----------------------------------------------------------------------------------------
@dataclass
class SFTData:
    """The encoded examples the sampler indexes, and what encoding kept and dropped."""

    examples: list[Example]
    stats: dict[str, int]


class SFTTrainer(TrainerShell):
    summary_keys = ("loss",)

    def __init__(self, cfg: DictConfig, run_dir: Path, *, host: PluginHost | None = None):
        s = cfg.sft
        pick(MASKS, s.loss_on, "sft.loss_on")  # fail before loading anything
        if not s.data:
            raise ValueError("sft.data is empty: give JSONL files, e.g. 'sft.data=[data/sft.jsonl]'")
        for key in ("batch_tokens", "micro_batch_tokens", "max_length"):
            if s[key] <= 0:
                raise ValueError(f"sft.{key} must be > 0, got {s[key]}")
        # checked before any model is loaded
        self.conversations = read_conversations(list(s.data), need_assistant=s.loss_on == "assistant")
        # under torchrun (trainer=ddp, deepspeed_*) every rank takes the same examples per step and trains on its share
        super().__init__(cfg, run_dir, host=host, optim_cfg=s.optim)

    def build_data(self, model: Any, tokenizer: Any) -> tuple[ExampleSampler, int, SFTData]:
        """The encoded data, the sampler over it and the number of steps it lasts (capped by ``sft.max_steps``)."""
        s = self.cfg.sft
        if s.packing:
            check_packing(model)
        data = SFTData(*self._encode(self.conversations, tokenizer))
        sampler = ExampleSampler([len(e) for e in data.examples], self.cfg.trainer.seed, s.epochs)
        total = sampler.count_steps(s.batch_tokens)
        return sampler, total if s.max_steps is None else min(total, s.max_steps), data

    def forward_module(self, model: Any) -> torch.nn.Module:
        return NLLSum(model)  # a DeepSpeed engine must run every forward pass itself

    @property
    def examples(self) -> list[Example]:
        return self.state.source.examples

    @property
    def stats(self) -> dict[str, int]:
        return self.state.source.stats

    def summary_start(self) -> dict[str, Any]:
        return {"loss": None, **self.stats}

    def _encode(self, conversations: list[tuple[str, list[dict]]], tokenizer: Any) -> tuple[list[Example], dict[str, int]]:
        s = self.cfg.sft
        renderer = PromptRenderer(tokenizer, self.cfg.model.prompt_format)
        kept, too_long, no_loss = [], [], 0
        for where, msgs in conversations:
            e = encode(renderer, msgs, s.loss_on, where)
            if len(e) > s.max_length:
                too_long.append(e.where)
            elif not any(e.mask):
                no_loss += 1
            else:
                kept.append(e)
        if too_long:
            log.warning("dropped %d of %d examples longer than sft.max_length=%d tokens (%s%s)",
                        len(too_long), len(conversations), s.max_length, ", ".join(too_long[:3]),
                        ", ..." if len(too_long) > 3 else "")
        if no_loss:
            log.warning("dropped %d examples without a loss token", no_loss)
        if not kept:
            raise ValueError(f"no example of sft.data is left: {len(too_long)} of {len(conversations)} are longer "
                             f"than sft.max_length={s.max_length} tokens, {no_loss} have no loss token")
        stats = {"examples": len(kept), "tokens": sum(map(len, kept)), "loss_tokens": sum(sum(e.mask) for e in kept),
                 "dropped_too_long": len(too_long), "dropped_no_loss": no_loss}
        log.info("SFT data: %s", stats)
        return kept, stats

    def training_step(self) -> tuple[dict[str, float], list[dict[str, Any]]]:
        return self.train_step(), []

    def train_step(self) -> dict[str, float]:
        s = self.cfg.sft
        t0 = time.perf_counter()
        examples = [self.examples[i] for i in self.sampler.take(s.batch_tokens)]
        n_loss = sum(sum(e.mask) for e in examples)  # the whole step's (every rank knows all its examples)
        mine = self.dist.shard(examples)
        device = next(self.model.parameters()).device
        loss, padded = 0.0, 0
        shape = {"packing": s.packing, "row_tokens": s.max_length, "micro_batch_tokens": s.micro_batch_tokens}
        # a strategy whose ranks must run as many passes pads with the step's first example at weight 0
        micro_batches = self.strategy.lockstep(layout(mine, **shape) if mine else [], layout(examples[:1], **shape)[0])
        for rows, counts in micro_batches:
            mb = collate(rows, self.tokenizer.pad_token_id, packing=s.packing, device=device)
            with self.autocast():
                part = self.strategy.forward(mb) / n_loss
            if not counts:
                part = part * 0.0
            self.strategy.backward(part)
            loss += float(part.detach())
            padded += mb.tokens if counts else 0
        loss = distributed.global_units(loss, self.dist)
        padded = distributed.global_units(padded, self.dist)
        grad_norm = self.strategy.step()
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        tokens, dt = sum(map(len, examples)), time.perf_counter() - t0
        return {"loss": loss, "lr": lr, "grad_norm": float(grad_norm), "tokens": float(tokens),
                "loss_tokens": float(n_loss), "examples": float(len(examples)), "padding_frac": 1.0 - tokens / padded,
                "epoch": self.sampler.epoch, "tokens_per_s": tokens / dt, "time/step": dt}
