"""GEMM rate (GFLOP/s; fp32, or bf16 with --dtype bfloat16) and memory copy bandwidth (GB/s) of this machine,
as torch sees it.

The GEMM is timed two ways: ``torch.mm`` (PyTorch's default BLAS, MKL in the official wheels) and oneDNN
(``torch.ops.mkldnn._linear_pointwise``, what r1gym routes fp32 linears to when ``trainer.matmul`` picks it;
see ``r1gym.core.onednn``). On AMD CPUs the two differ by about 2x; the ceiling is the faster one, so a
ceiling is what the machine can do, not what the default library does.

The other benchmarks turn the GEMM rate into a compute ceiling:

* decoding (rollout): a token costs about 2 x n_params FLOPs, so tokens/s <= GFLOP/s * 1e9 / (2 n_params);
* training (forward + backward): about 6 x n_params FLOPs a token, so tokens/s <= GFLOP/s * 1e9 / (6 n_params).

A square n x n x n matmul does 2 n^3 FLOPs; each size is timed ``--reps`` times after one warm-up and the best
time is kept (best-of: the machine's capability, not its noise). The ceiling uses the best size.
The copy test times ``dst.copy_(src)`` on a buffer far larger than the caches and counts 2 x the buffer
(one read, one write), as STREAM's "copy" does.

    python bench/gemm.py                       # 1024, 1536, 2048; 5 reps
    python bench/gemm.py --write-md            # and append the table to docs/benchmarks.md

Other scripts: ``sys.path.insert(0, <bench folder>)`` then ``from gemm import measure_gemm_gflops``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a script: its sibling report.py

import report  # noqa: E402

DEFAULT_SIZES = (1024, 1536, 2048)


def _best_seconds(fn, reps: int) -> float:
    fn()  # warm-up: thread pool, page faults
    best = float("inf")
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_gemm(sizes: Sequence[int] = DEFAULT_SIZES, reps: int = 5, dtype: str = "float32") -> list[dict[str, float]]:
    """Best-of-``reps`` rate for each square size in ``dtype`` (float32 or bfloat16: the ceiling of the precision
    in use), ``torch.mm`` and oneDNN: ``[{"n", "seconds", "gflops", "onednn_seconds", "onednn_gflops"}]`` (the
    oneDNN pair is NaN where this torch build has no oneDNN linear)."""
    import torch

    from r1gym.core import onednn

    out = []
    gen = torch.Generator().manual_seed(0)
    for n in sizes:
        a = torch.randn(n, n, generator=gen).to(getattr(torch, dtype))
        b = torch.randn(n, n, generator=gen).to(getattr(torch, dtype))
        c = torch.empty(n, n, dtype=a.dtype)
        row = {"n": n, "seconds": _best_seconds(lambda: torch.mm(a, b, out=c), reps)}
        row["onednn_seconds"] = float("nan")
        if onednn.available():
            bt = b.t()  # _linear_pointwise(a, w) = a @ w.T, so w = b.T gives a @ b
            row["onednn_seconds"] = _best_seconds(lambda: onednn._onednn(a, bt), reps)
        row["gflops"] = 2 * n**3 / row["seconds"] / 1e9
        row["onednn_gflops"] = 2 * n**3 / row["onednn_seconds"] / 1e9
        out.append(row)
    return out


def best_rate(results: Sequence[dict[str, float]]) -> float:
    """The best rate in ``measure_gemm`` results, either library (NaN-safe)."""
    return max(max(r["gflops"], r["onednn_gflops"] if r["onednn_gflops"] == r["onednn_gflops"] else 0.0)
               for r in results)


def measure_gemm_gflops(sizes: Sequence[int] = DEFAULT_SIZES, reps: int = 5) -> float:
    """The best fp32 GEMM rate over ``sizes`` and both libraries, in GFLOP/s (the other benchmarks' ceiling)."""
    return best_rate(measure_gemm(sizes, reps))


def measure_copy_gbps(mib: int = 512, reps: int = 5) -> float:
    """Best-of-``reps`` ``dst.copy_(src)`` bandwidth in GB/s (1e9 bytes), counting read + write."""
    import torch

    n = mib * 2**20 // 4
    src = torch.ones(n)
    dst = torch.empty(n)
    dst.copy_(src)  # warm-up: page faults on dst
    best = float("inf")
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t0)
    return 2 * n * 4 / best / 1e9


def matmul_params(model) -> tuple[int, int]:
    """(parameters that take part in matmuls, of which the LM head's) for a transformers causal LM.

    Every parameter counts once (tied embeddings once), except an untied input embedding: a lookup, no FLOPs.
    """
    n = sum(p.numel() for p in model.parameters())
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    head_n = head.weight.numel() if head is not None else 0
    if head is not None and emb.weight.data_ptr() != head.weight.data_ptr():
        n -= emb.weight.numel()
    return n, head_n


def decode_ceiling(gflops: float, n_params: int) -> float:
    """Decode tokens/s if every FLOP ran at the GEMM rate: GFLOP/s * 1e9 / (2 * n_params)."""
    return gflops * 1e9 / (2 * n_params)


def train_ceiling(gflops: float, n_params: int) -> float:
    """Trained tokens/s (forward + backward) at the GEMM rate: GFLOP/s * 1e9 / (6 * n_params)."""
    return gflops * 1e9 / (6 * n_params)


def add_gemm_args(parser: argparse.ArgumentParser) -> None:
    """The flags every benchmark with a ceiling takes."""
    parser.add_argument("--gemm-gflops", type=float, default=None,
                        help="use this GEMM rate instead of measuring it (e.g. from a quiet `bench/gemm.py` run)")
    parser.add_argument("--gemm-sizes", type=int, nargs="+", default=list(DEFAULT_SIZES),
                        help="square sizes for the GEMM measurement (default: %(default)s)")
    parser.add_argument("--gemm-reps", type=int, default=5, help="timed reps per GEMM size (best-of)")


def gemm_rate(args: argparse.Namespace) -> tuple[float, str]:
    """(GFLOP/s, where it came from) for a script's ``add_gemm_args`` flags."""
    if args.gemm_gflops:
        return args.gemm_gflops, "given by --gemm-gflops"
    g = measure_gemm_gflops(args.gemm_sizes, args.gemm_reps)
    return g, f"measured: best of {args.gemm_reps} reps over sizes {args.gemm_sizes}"


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES), help="square matmul sizes")
    p.add_argument("--reps", type=int, default=5, help="timed reps per size (best-of)")
    p.add_argument("--copy-mib", type=int, default=512, help="copy buffer size in MiB (0 skips the copy test)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                   help="GEMM precision: bfloat16 gives the ceiling of a bf16 sampler or bf16 autocast")
    p.add_argument("--write-md", action="store_true", help="append the results to docs/benchmarks.md")
    p.add_argument("--md-path", default=str(report.DEFAULT_MD), help="Markdown file for --write-md")
    args = p.parse_args(argv)
    info = report.start(args.threads)
    results = measure_gemm(args.sizes, args.reps, args.dtype)
    headers = [f"{'fp32' if args.dtype == 'float32' else 'bf16'} GEMM n x n x n", "torch.mm best", "torch.mm GFLOP/s",
               "oneDNN best", "oneDNN GFLOP/s"]
    rows = [[f"{r['n']}", f"{r['seconds'] * 1e3:.2f} ms", r["gflops"], f"{r['onednn_seconds'] * 1e3:.2f} ms",
             r["onednn_gflops"]] for r in results]
    best = best_rate(results)
    copy = measure_copy_gbps(args.copy_mib, args.reps) if args.copy_mib > 0 else float("nan")
    print()
    print(report.text_table(headers, rows))
    print(f"\nbest GEMM: {best:.1f} GFLOP/s, either library (the ceiling the other benchmarks use)")
    if args.copy_mib > 0:
        print(f"memory copy ({args.copy_mib} MiB, read + write counted): {copy:.2f} GB/s")
    if args.write_md:
        body = report.markdown_table(headers, rows)
        body += f"\n\nBest GEMM (either library) **{best:.1f} GFLOP/s**"
        if args.copy_mib > 0:
            body += f"; memory copy ({args.copy_mib} MiB buffer, read + write counted) **{copy:.2f} GB/s**"
        body += f"; best of {args.reps} reps.\n"
        path = report.append_section("gemm", body, info, path=args.md_path)
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
