"""``HFBackend``: the sampling loop, and the two forward passes it can drive.

The loop (``mode: loop``, the default) is the same whatever runs the model:

* **shared prefill**: the G samples of a GRPO group have the same prompt; each distinct prompt is prefilled
  once and its KV cache fanned out to its G rows;
* **finished rows leave the batch**: a row that sampled EOS or a stop string stops being recorded at once,
  and leaves the KV cache when a quarter of the rows have finished (at small batch a decode step costs about
  the same for 12 rows as for 16, while dropping rows copies the whole cache);
* **continuous batching** (``continuous``, lean decoder): a request larger than ``batch_size`` does not run
  in chunks that each last as long as their longest sequence; the cache has ``batch_size`` slots, and when
  rows finish, waiting prompt groups are prefilled (still once per distinct prompt) into the freed slots, so
  GRPO's natural lengths (several-fold apart within a step) stop costing the longest one at every row;
* **logits only where needed**: the prefill computes the LM head for the last prompt position only;
* **sampling without the full-vocabulary multinomial** (:mod:`.sampling`).

The forward pass is :class:`~.lean.LeanDecoder` for Llama-family models (static KV cache, optional bf16
sampler weights) and transformers' own forward otherwise (``_HFStepper``, with a KV cache that grows in place
instead of by concatenation). ``decoder: hf`` forces the latter. ``mode: generate`` calls ``model.generate``
instead of the loop (the benchmarks compare the two).
"""

from __future__ import annotations

import collections
import functools
import logging
from collections.abc import Sequence
from typing import Any

import torch

from r1gym.core.distributed import zero3_partitioned
from r1gym.core.registry import pick
from r1gym.plugins.hf_rollout.sampling import sample_next

log = logging.getLogger(__name__)

MODES = ("loop", "generate")
DECODERS = ("auto", "lean", "hf")
#: ``rollout.params.dtype`` -> the lean decoder's weights (``torch.int8``: int8 linears, bf16 activations)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "int8": torch.int8}
#: what ``dtype: auto`` can choose from, most precise first ("null": the model's own tensors)
AUTO_DTYPES = ("null", "bfloat16", "int8")
#: what it chooses from unless ``auto_dtypes`` says otherwise: the precisions whose demo learning curves were
#: shown within fp32's seed-to-seed spread (bf16: docs/benchmarks.md ``demo_precision``). int8 is not among
#: them: its curves have not been run, and under load its timing once won (2026-12-07: fp32 515, bf16 524,
#: int8 426 ms) on a machine where quiet runs put it behind bf16.
DEFAULT_AUTO_DTYPES = ("null", "bfloat16")
#: finished rows are dropped from the KV cache once they are at least this share of the rows in it
COMPACT_SHARE = 0.25
CONTINUOUS = ("auto", True, False)
PACK = ("auto", True, False)


class HFBackend:
    """Rollout backend over a transformers causal LM that the trainer shares (weight sync is free or a copy).

    Args (``rollout.params`` in the config):
        batch_size: most sequences sampled together; larger requests are split, whole prompt groups per chunk.
        mode: ``loop`` (r1gym's sampling loop) or ``generate`` (``model.generate``).
        decoder: ``auto`` (the lean decoder where the model supports it), ``lean`` (required: an error if the
            model is not supported) or ``hf`` (transformers' forward).
        dtype: precision of the lean decoder's weights: ``null`` (the model's own, sharing its tensors),
            ``bfloat16`` (a copy refreshed after each optimizer step; 1.5-3x faster decode on CPUs with
            AVX512-BF16 or AMX), ``int8`` (weight-only int8 linears with per-output-channel scales, bf16
            activations, embeddings and LM head; also refreshed after each step), ``float32`` or ``auto``:
            times a decode step of ``batch_size`` rows on this model in fp32 (null), bf16 and int8 once, here,
            and keeps a less precise one only if it is 1.2x faster than the more precise (only those in
            ``auto_dtypes`` are timed)
            (:mod:`r1gym.core.precision`; logged, kept in ``dtype_choice`` / ``dtype_timings_ms``, written
            to the run folder and reused on resume). The measurement costs 18 decode steps and the two copies:
            12 s at 16 rows and 20 s at 64 on SmolLM2-135M on the shared 2-core machine (2026-12-07, where it
            chose bfloat16: fp32 682, bf16 401, int8 787 ms a step at 64 rows). A sampler other than the model's own weights makes
            ``exact_logprobs`` false, so the trainer's importance correction accounts for the mismatch.
        continuous: continuous batching (``mode: loop``): ``batch_size`` cache slots, refilled with waiting
            prompts as sequences finish, instead of chunks of ``batch_size`` run one after another. ``true``
            needs the lean decoder (an error otherwise); ``auto`` uses it where the lean decoder runs and logs
            why not elsewhere (transformers' cache has one length for all rows; a refilled row needs its own);
            ``false`` (the default) is the chunked path: side by side on a busy 2-core machine, continuous
            batching was 1.01x and 1.03x its speed (within the repeats' spread; docs/benchmarks.md). A request
            of at most ``batch_size`` sequences (the demo's 64 of 64) runs as one batch either way: nothing
            waits. Same tokens under greedy decoding, same
            log-probs (to float rounding), same sampling distribution; only the order random numbers are
            drawn in differs. ``counts`` says what the last call did (prefills, decode steps).
        auto_dtypes: the precisions ``dtype: auto`` times and chooses from (default ``[null, bfloat16]``: the
            ones whose learning curves were checked; add ``int8`` once its curves on your task are).
        pack_weights: on the CPU, keep the lean decoder's linear weights packed once in oneDNN's layout for
            ``batch_size``-row products: ``true``, ``false`` or ``auto`` (the default: packed where the sampler
            keeps a bf16 copy anyway). An unpacked weight is reordered at every product, which at a decode
            step's few rows costs about as much as the product. Side by side (bench/rollout.py, SmolLM2-135M,
            AMD EPYC, 2026-12-08; docs/benchmarks.md), packed vs not: bf16 270 vs 234 tok/s at batch 16, 357
            vs 312 at 64; fp32 152 vs 114 and 244 vs 218. The packed weights are a copy, rebuilt at each sync:
            bf16 135 ms instead of 40 on SmolLM2; in fp32 340-400 ms instead of nothing (the sampler otherwise
            shares the trainer's tensors), more than a short rollout gains (the demo's 64 x 40-token rollout
            gained 0.2 s in bf16), so ``auto`` leaves fp32 unpacked; ``true`` packs it for long rollouts.
        refill_share: continuous batching refills freed slots once at least this share of ``batch_size`` is
            free (or all that waits fits): each refill is one prefill call (and a group split over two refills
            has its prompt prefilled twice), so refilling one row at a time costs more calls, while waiting
            longer leaves slots idle.
    """

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 64, mode: str = "loop",
                 decoder: str = "auto", dtype: str | None = None, continuous: str | bool = False,
                 refill_share: float = 0.125, pack_weights: bool | str = "auto",
                 auto_dtypes: Sequence[str | None] = DEFAULT_AUTO_DTYPES):
        if batch_size < 1:
            raise ValueError(f"rollout.params.batch_size must be >= 1, got {batch_size}")
        if mode not in MODES:
            raise ValueError(f"rollout.params.mode must be one of {MODES}, got {mode!r}")
        if decoder not in DECODERS:
            raise ValueError(f"rollout.params.decoder must be one of {DECODERS}, got {decoder!r}")
        if continuous not in CONTINUOUS:
            raise ValueError(f"rollout.params.continuous must be auto, true or false, got {continuous!r}")
        if not 0 < refill_share <= 1:
            raise ValueError(f"rollout.params.refill_share must be in (0, 1], got {refill_share}")
        if dtype is not None:
            pick({**DTYPES, "auto": None, "null": None}, dtype, "rollout.params.dtype")
        self.dtype = DTYPES.get(dtype)
        self.auto_dtypes = self._auto_dtypes(auto_dtypes)
        #: the ``rollout.params.dtype`` in use (what ``auto`` chose; ``None``: the model's own) and, for ``auto``,
        #: the decode-step timings (ms) it chose from
        self.dtype_choice: str | None = None if dtype == "null" else dtype
        self.dtype_timings_ms: dict[str, float] = {}
        self.model, self.tokenizer, self.batch_size, self.mode = model, tokenizer, batch_size, mode
        if pack_weights not in PACK:
            raise ValueError(f"rollout.params.pack_weights must be auto, true or false, got {pack_weights!r}")
        self.pack_weights = pack_weights
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos = tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        if gen_eos is not None:
            self.eos_ids |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos])
        self.lean = self._lean_decoder(decoder)
        if dtype == "auto":
            self._choose_dtype()
        if self.dtype is not None and self.lean is None:
            raise ValueError(f"rollout.params.dtype={dtype} needs the lean decoder, which is not in use here; "
                             "set rollout.params.dtype=null")
        if continuous is True and self.lean is None:
            raise ValueError("rollout.params.continuous=true needs the lean decoder, which is not in use here "
                             "(transformers' KV cache has one length for all rows); set continuous=auto or false")
        if continuous == "auto" and self.lean is None and mode == "loop":
            log.info("hf rollout backend: no continuous batching (transformers' KV cache has one length for all "
                     "rows, a refilled row needs its own); requests run in chunks of batch_size")
        self.continuous = self.lean is not None and continuous is not False
        self.refill_share = refill_share
        #: forward calls of the last ``generate``: prefills, decode steps, and rows summed over decode steps
        self.counts = {"prefills": 0, "decode_steps": 0, "decode_rows": 0}

    @staticmethod
    def _auto_dtypes(names: Sequence[str | None]) -> tuple[str, ...]:
        """``auto_dtypes`` checked and put in :data:`AUTO_DTYPES`' order (null, i.e. the model's own weights,
        is always the baseline the others are timed against)."""
        given = {"null" if n is None else str(n) for n in names}
        for name in given:
            pick(dict.fromkeys(AUTO_DTYPES), name, "rollout.params.auto_dtypes entry")
        return tuple(n for n in AUTO_DTYPES if n in given or n == "null")

    def _pack_rows(self, dtype: torch.dtype | None) -> int | None:
        """The rows the lean decoder in ``dtype`` packs its weights for (``None``: not packed); see
        ``pack_weights``. Never under ZeRO-3, where the trainer holds a shard of the weights and a packed
        copy would hold all of them."""
        if zero3_partitioned(self.model):
            return None
        packed = self.pack_weights is True or (self.pack_weights == "auto" and dtype == torch.bfloat16)
        return self.batch_size if packed else None

    def _lean_decoder(self, choice: str) -> Any:
        from r1gym.plugins.hf_rollout.lean import LeanDecoder, unsupported_reason

        if choice == "hf":
            return None
        reason = unsupported_reason(self.model)
        if reason is None:
            return LeanDecoder(self.model, self.dtype, self._pack_rows(self.dtype))
        if choice == "lean":
            raise ValueError(f"rollout.params.decoder=lean cannot run this model: {reason}; use decoder=auto or hf")
        log.info("hf rollout backend: transformers forward for this model (%s)", reason)
        return None

    def _choose_dtype(self) -> None:
        """``dtype: auto``: time the lean decoder's decode step in each precision (:data:`AUTO_DTYPES`) and keep
        the choice (a resumed run reuses its recorded one)."""
        from r1gym.core import precision
        from r1gym.plugins.hf_rollout.lean import LeanDecoder

        key = "rollout.params.dtype"
        if self.lean is None or self.mode != "loop":
            why = "mode=generate samples with the model itself" if self.lean is not None else "no lean decoder here"
            rec = precision.record(key, None, how="only", what=f"the model's own weights ({why})")
        elif key in precision.pins():
            rec = precision.record(key, precision.pins()[key], how="resumed")
            if rec.choice is not None:
                self.lean = LeanDecoder(self.model, DTYPES[rec.choice], self._pack_rows(DTYPES[rec.choice]))
        else:
            decoders = {"null": self.lean}
            if "bfloat16" in self.auto_dtypes:
                decoders["bfloat16"] = LeanDecoder(self.model, torch.bfloat16, self._pack_rows(torch.bfloat16))
            if "int8" in self.auto_dtypes and precision.int8_available():
                decoders["int8"] = LeanDecoder(self.model, torch.int8)
            steps = {name: d.step_timer(self.batch_size) for name, d in decoders.items()}
            timings = precision.interleaved_best(steps, reps=1)  # a step at batch_size rows is long enough
            choice = precision.choose(timings, self.auto_dtypes)
            rec = precision.record(key, None if choice == "null" else choice, timings,
                                   what=f"lean decode step of {self.batch_size} rows")
            self.lean = decoders[choice]
        self.dtype_choice, self.dtype_timings_ms = rec.choice, rec.timings_ms
        self.dtype = DTYPES.get(rec.choice)

    @property
    def decoder(self) -> str:
        """Which forward pass the loop runs: ``lean`` or ``hf``."""
        return "lean" if self.lean is not None else "hf"

    @property
    def exact_logprobs(self) -> bool:
        """Whether the sampler's log-probs are the trainer's (fp32 weights shared with it) or come from another
        numeric path (bf16 or int8 sampler weights), which the trainer's importance correction then accounts for."""
        return self.dtype is None

    def sync_weights(self, model: Any) -> None:
        """The same module object as the trainer's: nothing to copy, except the lean decoder's bf16/int8 copy."""
        self.model = model
        if self.lean is not None:
            self.lean.sync(model)

    def generate(self, prompts: Sequence[Sequence[int]], params: Any) -> list:
        run = self._loop if self.mode == "loop" else self._hf_generate
        # keep the samples of one prompt in the same chunk, so the shared prefill stays shared
        order = sorted(range(len(prompts)), key=lambda i: (tuple(prompts[i]), i))
        out: list = [None] * len(prompts)
        was_training = self.model.training
        self.model.eval()
        self.counts = dict.fromkeys(self.counts, 0)
        chunk_size = max(1, len(order)) if self.continuous and self.mode == "loop" else self.batch_size
        try:
            for start in range(0, len(order), chunk_size):
                chunk = order[start : start + chunk_size]
                gens = (self._continuous if chunk_size > self.batch_size else run)([prompts[i] for i in chunk], params)
                for i, gen in zip(chunk, gens):
                    out[i] = gen
        finally:
            self.model.train(was_training)
            if self.lean is not None and zero3_partitioned(self.model):
                self.lean.release()  # the weights were gathered for this rollout only
        return out

    # -- the sampling loop -----------------------------------------------------------------------------
    def _loop(self, prompts: Sequence[Sequence[int]], params: Any) -> list:
        uniq: dict[tuple[int, ...], int] = {}
        fan_out = torch.tensor([uniq.setdefault(tuple(p), len(uniq)) for p in prompts])
        width = max(len(p) for p in uniq)
        ids = torch.full((len(uniq), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(uniq), width), dtype=torch.long)
        for p, row in uniq.items():
            ids[row, width - len(p) :] = torch.tensor(p)
            mask[row, width - len(p) :] = 1
        dev = next(self.model.parameters()).device  # the trainer's device (a GPU, or under ZeRO-3 gathered)
        fan_out, ids, mask = fan_out.to(dev), ids.to(dev), mask.to(dev)
        B, steps = len(prompts), params.max_new_tokens
        out_tok = torch.full((B, steps), self.pad_id, dtype=torch.long, device=dev)
        out_lp = torch.zeros(B, steps, device=dev)
        length = torch.full((B,), steps, dtype=torch.long, device=dev)
        stopped = torch.zeros(B, dtype=torch.bool, device=dev)
        eos = torch.tensor(sorted(self.eos_ids), device=dev)
        stepper = _LeanStepper(self.lean) if self.lean is not None else _HFStepper(self.model)
        with torch.no_grad():
            logits = stepper.prefill(ids, mask, fan_out, steps)
            self.counts["prefills"] += 1
            pos = mask.sum(-1)[fan_out]  # the next token's position, per row in the stepper
            rows = torch.arange(B, device=dev)  # stepper row -> output row
            live = torch.ones(B, dtype=torch.bool, device=dev)  # stepper rows still sampling
            for step in range(steps):
                early = step < params.min_new_tokens
                tok, lp = sample_next(logits, params.temperature, params.top_k, params.top_p, eos if early else None)
                out_tok[rows[live], step] = tok[live]
                out_lp[rows[live], step] = lp[live]
                done = live & torch.isin(tok, eos)
                if params.stop and not early:
                    for j in live.nonzero().squeeze(-1).tolist():
                        if not done[j] and self._hits_stop(out_tok[rows[j], : step + 1].tolist(), params.stop):
                            done[j] = True
                if bool(done.any()):
                    length[rows[done]] = step + 1
                    stopped[rows[done]] = True
                    live &= ~done
                if step == steps - 1 or not bool(live.any()):
                    break
                if (~live).sum() >= max(1, COMPACT_SHARE * len(live)):
                    keep = live.nonzero().squeeze(-1)
                    stepper.select(keep)
                    rows, tok, pos, live = rows[keep], tok[keep], pos[keep], live[keep]
                logits = stepper.step(tok, pos)
                self.counts["decode_steps"] += 1
                self.counts["decode_rows"] += len(tok)
                pos = pos + 1
        return self._generations(out_tok, out_lp, length, stopped)

    def _generations(self, out_tok: torch.Tensor, out_lp: torch.Tensor, length: torch.Tensor,
                     stopped: torch.Tensor) -> list:
        toks, lps, n = out_tok.tolist(), out_lp.tolist(), length.tolist()
        return [self._generation(toks[i][: n[i]], lps[i][: n[i]], "stop" if stopped[i] else "length")
                for i in range(len(toks))]

    # -- continuous batching ---------------------------------------------------------------------------
    def _continuous(self, prompts: Sequence[Sequence[int]], params: Any) -> list:
        """The loop over ``batch_size`` cache slots: finished rows free their slot, and once
        ``refill_share`` of the slots are free the next prompt groups (same prompt = one prefill, fanned
        out) are prefilled into them at positions 0.. while the other rows go on. Once nothing waits,
        finished rows leave the cache as in :meth:`_loop`. ``prompts`` come sorted (equal prompts adjacent)."""
        groups: list[tuple[Sequence[int], list[int]]] = []  # (prompt, its output rows), at most batch_size rows
        for i, p in enumerate(prompts):
            if groups and groups[-1][0] == p and len(groups[-1][1]) < self.batch_size:
                groups[-1][1].append(i)
            else:
                groups.append((p, [i]))
        waiting = collections.deque(groups)
        dev = next(self.model.parameters()).device
        N, steps, S = len(prompts), params.max_new_tokens, self.batch_size
        out_tok = torch.full((N, steps), self.pad_id, dtype=torch.long, device=dev)
        out_lp = torch.zeros(N, steps, device=dev)
        length = torch.full((N,), steps, dtype=torch.long, device=dev)
        stopped = torch.zeros(N, dtype=torch.bool, device=dev)
        eos = torch.tensor(sorted(self.eos_ids), device=dev)
        cache = self.lean.slot_cache(S, max(len(p) for p in prompts) + steps)
        row = torch.full((S,), -1, dtype=torch.long, device=dev)  # slot -> output row (-1: free)
        pos = torch.zeros(S, dtype=torch.long, device=dev)  # slot -> position of the token it feeds next
        made = torch.zeros(S, dtype=torch.long, device=dev)  # slot -> tokens sampled so far
        tok = torch.full((S,), self.pad_id, dtype=torch.long, device=dev)
        logits = live = None
        refill_at = max(1, round(self.refill_share * S))

        def refill_due() -> bool:  # enough slots are free (or all that waits fits)
            return bool(waiting) and int((row < 0).sum()) >= min(refill_at, sum(len(g[1]) for g in waiting))

        with torch.no_grad():
            while True:
                if refill_due():  # new rows sample their first token now, before the others' next step
                    new_logits, fresh = self._refill(waiting, (row < 0).nonzero().squeeze(-1), cache, row, pos, made)
                else:
                    new_logits, fresh = logits[live], live.nonzero().squeeze(-1)
                r, k = row[fresh], made[fresh]
                early = k < params.min_new_tokens
                banned = eos if bool(early.any()) else None
                t, lp = sample_next(new_logits, params.temperature, params.top_k, params.top_p, banned,
                                    None if banned is None or bool(early.all()) else early)
                out_tok[r, k], out_lp[r, k] = t, lp
                tok[fresh], made[fresh] = t, k + 1
                done = torch.isin(t, eos)
                if params.stop:
                    for j in (~done & ~early).nonzero().squeeze(-1).tolist():
                        if self._hits_stop(out_tok[r[j], : k[j] + 1].tolist(), params.stop):
                            done[j] = True
                ended = done | (k + 1 >= steps)
                if bool(ended.any()):
                    length[r[ended]] = k[ended] + 1
                    stopped[r[done]] = True
                    row[fresh[ended]] = -1
                live = row >= 0
                if refill_due():  # the live rows keep this step's token in ``tok`` for the decode after it
                    continue
                if not waiting:
                    if not bool(live.any()):
                        break
                    if (~live).sum() >= max(1, COMPACT_SHARE * len(live)):  # as in _loop
                        keep = live.nonzero().squeeze(-1)
                        cache.select(keep)
                        row, pos, made, tok, live = row[keep], pos[keep], made[keep], tok[keep], live[keep]
                logits = self.lean.decode(tok, pos, cache)
                self.counts["decode_steps"] += 1
                self.counts["decode_rows"] += len(tok)
                pos = torch.where(live, pos + 1, pos)  # a free slot keeps writing its own last column
        return self._generations(out_tok, out_lp, length, stopped)

    def _refill(self, waiting: Any, free: torch.Tensor, cache: Any, row: torch.Tensor, pos: torch.Tensor,
                made: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prefill the next waiting prompt groups into the ``free`` slots (one forward call, each distinct
        prompt once, fanned out to its rows); return their logits and the slots they went to. A group that
        does not fit whole is split: its other rows wait (and their prompt is prefilled again with them),
        since an idle slot costs a row at every decode step until a whole group's worth is free."""
        taken: list[tuple[Sequence[int], list[int]]] = []
        room = len(free)
        while waiting and room:
            prompt, rows = waiting[0]
            if len(rows) <= room:
                taken.append(waiting.popleft())
            else:
                taken.append((prompt, rows[:room]))
                waiting[0] = (prompt, rows[room:])
            room -= len(taken[-1][1])
        dev = free.device
        width = max(len(p) for p, _ in taken)
        ids = torch.full((len(taken), width), self.pad_id, dtype=torch.long)
        for j, (p, _) in enumerate(taken):
            ids[j, : len(p)] = torch.tensor(p)
        lengths = torch.tensor([len(p) for p, _ in taken], device=dev)
        fan_out = torch.tensor([j for j, (_, rows) in enumerate(taken) for _ in rows], device=dev)
        slots = free[: len(fan_out)]
        logits = self.lean.prefill_slots(ids.to(dev), lengths, cache, slots, fan_out)
        self.counts["prefills"] += 1
        row[slots] = torch.tensor([i for _, rows in taken for i in rows], device=dev)
        pos[slots], made[slots] = lengths[fan_out], 0
        return logits, slots

    def _hits_stop(self, ids: list[int], stops: Sequence[str]) -> bool:
        tail = self.tokenizer.decode(ids[-16:], skip_special_tokens=True)
        return any(tail.endswith(s) for s in stops)

    def _generation(self, ids: list[int], logprobs: list[float], finish: str) -> Any:
        from r1gym.core.rollout import Generation

        return Generation(ids, self.tokenizer.decode(ids, skip_special_tokens=True), logprobs, finish)

    # -- plain transformers generate (for comparison) ----------------------------------------------------
    def _hf_generate(self, prompts: Sequence[Sequence[int]], params: Any) -> list:
        from transformers import GenerationConfig

        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            input_ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            attention[i, width - len(p) :] = 1
        greedy = params.temperature <= 0
        gen_cfg = GenerationConfig(
            max_new_tokens=params.max_new_tokens, min_new_tokens=params.min_new_tokens or None, do_sample=not greedy,
            temperature=None if greedy else params.temperature,
            top_p=params.top_p if not greedy and params.top_p < 1.0 else None,
            top_k=params.top_k if not greedy else None,  # 0 = off (None would mean transformers' default 50)
            eos_token_id=sorted(self.eos_ids), pad_token_id=self.pad_id,
            stop_strings=list(params.stop) or None, return_dict_in_generate=True, output_logits=True,
        )
        dev = next(self.model.parameters()).device
        input_ids, attention = input_ids.to(dev), attention.to(dev)
        with torch.no_grad():
            res = self.model.generate(input_ids=input_ids, attention_mask=attention, generation_config=gen_cfg,
                                      tokenizer=self.tokenizer if params.stop else None)
        new = res.sequences[:, width:]
        logits = torch.stack(res.logits, dim=1).float()
        logp = torch.log_softmax(logits / (1.0 if greedy else params.temperature), dim=-1)
        lps = logp.gather(-1, new[:, : logits.shape[1]].unsqueeze(-1)).squeeze(-1)
        gens = []
        for i in range(len(prompts)):
            ids, finish = new[i].tolist(), "length"
            for j, t in enumerate(ids):
                if t in self.eos_ids:
                    ids, finish = ids[: j + 1], "stop"
                    break
            if finish == "length" and params.stop and self._hits_stop(ids, params.stop):
                finish = "stop"
            gens.append(self._generation(ids, lps[i, : len(ids)].tolist(), finish))
        return gens


class _LeanStepper:
    """The loop's forward pass through :class:`~.lean.LeanDecoder`."""

    def __init__(self, decoder: Any):
        self.decoder, self.cache = decoder, None

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor, fan_out: torch.Tensor, room: int) -> torch.Tensor:
        logits, self.cache = self.decoder.prefill(ids, mask, room)
        self.cache.select(fan_out)
        return logits[fan_out]

    def select(self, rows: torch.Tensor) -> None:
        self.cache.select(rows)

    def step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.decoder.decode(tokens, positions, self.cache)


class _HFStepper:
    """The loop's forward pass through the transformers model itself (any architecture)."""

    def __init__(self, model: Any):
        self.model = model

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor, fan_out: torch.Tensor, room: int) -> torch.Tensor:
        from r1gym.core.compat import output_cache

        out = self.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                         use_cache=True, logits_to_keep=1)
        self.cache = output_cache(out)
        self.cache.batch_select_indices(fan_out)
        _preallocate(self.cache, room)
        self.attn = mask[fan_out]
        return out.logits[fan_out, -1]

    def select(self, rows: torch.Tensor) -> None:
        self.cache.batch_select_indices(rows)
        self.attn = self.attn[rows]

    def step(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        from r1gym.core.compat import cache_kwargs

        self.attn = torch.cat([self.attn, self.attn.new_ones(len(tokens), 1)], dim=1)
        out = self.model(input_ids=tokens[:, None], attention_mask=self.attn, position_ids=positions[:, None],
                         use_cache=True, **cache_kwargs(self.model, self.cache))
        return out.logits[:, -1]


@functools.lru_cache(maxsize=1)
def _roomy_layer_class() -> type:
    """Built on first use, so importing this plugin does not import transformers."""
    from transformers.cache_utils import DynamicLayer

    class RoomyLayer(DynamicLayer):
        """A DynamicLayer over a preallocated buffer: appending writes into it instead of concatenating."""

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            n, k = self._n, key_states.shape[-2]
            if n + k > self._k.shape[-2]:  # out of room: grow like a list does
                extra = max(k, self._k.shape[-2])
                self._k = torch.cat([self._k, self._k.new_empty(*self._k.shape[:2], extra, self._k.shape[-1])], -2)
                self._v = torch.cat([self._v, self._v.new_empty(*self._v.shape[:2], extra, self._v.shape[-1])], -2)
            self._k[:, :, n : n + k] = key_states
            self._v[:, :, n : n + k] = value_states
            self._n = n + k
            self.keys, self.values = self._k[:, :, : self._n], self._v[:, :, : self._n]
            return self.keys, self.values

        def batch_select_indices(self, indices: Any) -> None:
            self._k, self._v = self._k[indices], self._v[indices]
            self.keys, self.values = self._k[:, :, : self._n], self._v[:, :, : self._n]

    return RoomyLayer


def _preallocate(cache: Any, room: int) -> None:
    """Give every layer of a transformers DynamicCache room for ``room`` more positions (in place)."""
    from transformers.cache_utils import DynamicLayer

    RoomyLayer = _roomy_layer_class()
    for i, layer in enumerate(cache.layers):
        if type(layer) is not DynamicLayer or not layer.is_initialized:
            continue  # sliding-window or other layer kinds keep their own logic
        new = RoomyLayer()
        new.device, new.is_initialized = layer.keys.device, True
        new.dtype = layer.keys.dtype  # older transformers keep it; newer ones read it off the tensors
        B, H, n, D = layer.keys.shape
        new._k = layer.keys.new_empty(B, H, n + room, D)
        new._v = layer.values.new_empty(B, H, n + room, D)
        new._k[:, :, :n], new._v[:, :, :n] = layer.keys, layer.values
        new._n = n
        new.keys, new.values = new._k[:, :, :n], new._v[:, :, :n]
        cache.layers[i] = new
