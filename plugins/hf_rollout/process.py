"""``hf_process``: the ``hf`` sampling loop in a second process on the CPU, with its own copy of the weights.

Why: in one process, sampling and training take turns on the same cores. With generation in a process of
its own, the trainer can train step k while the child samples step k+1 (``rollout.overlap=true``, see
:mod:`r1gym.core.overlap`), each with its share of the cores (``rollout.params.threads`` for the child,
``trainer.threads`` for the trainer).

How:

* the child is started with ``spawn`` (a clean interpreter: no forked OpenMP or oneDNN state) and builds the
  same architecture from the trainer's config; its parameters are **shared-memory tensors** owned by this
  backend, so a weight sync is one in-place copy of the trainer's parameters into them (no pickling, no file);
  the child then lets its :class:`~.backend.HFBackend` refresh what it derives from them (a bf16 copy);
* ``generate`` sends token-id prompts and :class:`~r1gym.core.rollout.SamplingParams` and gets
  :class:`~r1gym.core.rollout.Generation` objects back. The child samples with **the trainer's torch RNG
  state**, sent with the request, and returns the state it ends in, which the trainer takes over: the run draws
  the same random numbers as the in-process ``hf`` backend, so with the same threads it samples the same tokens
  (tested), is deterministic given ``trainer.seed``, and its checkpoints resume the same trajectory;
* the child's fp32 matmul library is the trainer's choice (:mod:`r1gym.core.onednn`), so its log-probs are
  the trainer's (``exact_logprobs`` as for ``hf``);
* every wait is bounded: a child that dies (killed, out of memory) or does not answer within
  ``timeout_s`` raises :class:`RolloutProcessError` naming what happened, instead of hanging the run.

Not supported: LoRA-wrapped policies (the child holds a plain model; merge first) and models on a GPU
(a second process on the CPU is what this backend is for; on GPUs use ``vllm_server``).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)


class RolloutProcessError(RuntimeError):
    """The rollout child process died, failed, or did not answer in time."""


class HFProcessBackend:
    """The ``hf`` backend's sampling loop in a child process (see the module docstring).

    Args (``rollout.params``): ``threads`` (torch threads of the child; default 1), ``timeout_s`` (longest wait
    for one answer of the child, start-up included), ``start_timeout_s`` (start-up: importing torch and
    transformers, building the model), and every parameter of :class:`~.backend.HFBackend` (``batch_size``,
    ``decoder``, ``dtype``, ...), which the child's backend gets.
    """

    #: generation runs in another process, so a rollout can overlap the trainer's update (rollout.overlap)
    separate_process = True

    def __init__(self, model: Any, tokenizer: Any, *, threads: int = 1, timeout_s: float = 600.0,
                 start_timeout_s: float = 300.0, **hf_params: Any):
        import torch
        import torch.multiprocessing as mp

        from r1gym.core import onednn, precision

        if threads < 1:
            raise ValueError(f"rollout.params.threads must be >= 1 (torch threads of the rollout process), got {threads}")
        if hasattr(model, "peft_config"):
            raise ValueError("rollout=hf_process cannot sample from a LoRA-wrapped policy (the child holds a plain "
                             "model); use rollout=hf with model.lora, or merge the adapters first")
        params = list(model.parameters())
        if any(p.device.type != "cpu" for p in params):
            raise ValueError("rollout=hf_process samples on the CPU, but the policy is on "
                             f"{params[0].device}; on GPUs use rollout=vllm_server")
        self.timeout_s, self.threads = float(timeout_s), int(threads)
        # the child's parameters: shared memory that the trainer writes into at every sync
        self._names = [name for name, _ in model.named_parameters()]
        self._shared = {name: p.detach().clone().share_memory_() for name, p in model.named_parameters()}
        ctx = mp.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(target=_child_main, args=(child_conn,), name="r1gym-rollout", daemon=True)
        t0 = time.perf_counter()
        self._proc.start()
        child_conn.close()
        self._closed = False
        self._gone = ""  # why the child can no longer be used, once it cannot
        # the child's backend makes its own ``auto`` choices (dtype: timed with the child's threads); a resumed
        # run's recorded ones go to it, and what it chose comes back into this process's records (precision.json)
        exact, records = self._request(
            ("init", type(model), model.config, tokenizer, self._shared, dict(hf_params), self.threads,
             onednn.selected(), next(iter(params)).dtype if params else torch.float32, precision.pins()),
            timeout=start_timeout_s, what="starting")
        precision.adopt(records, made_by=f"the rollout process ({self.threads} threads)")
        #: whether the child's log-probs are the trainer's numbers (its HFBackend says: fp32 weights yes, bf16 no)
        self.exact_logprobs = bool(exact)
        log.info("hf_process rollout child pid %d started in %.1f s (%d threads)", self._proc.pid,
                 time.perf_counter() - t0, self.threads)
        #: seconds the child spent in its last ``generate`` (sampling only, without the messages)
        self.last_generate_s = 0.0

    @property
    def pid(self) -> int:
        return self._proc.pid

    # -- the protocol -------------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Sequence[int]], params: Any) -> list:
        import torch

        out, rng, seconds = self._request(("generate", [list(map(int, p)) for p in prompts], params,
                                           torch.get_rng_state()), timeout=self.timeout_s, what="generating")
        torch.set_rng_state(rng)  # the trainer's stream continues where the child's sampling left it
        self.last_generate_s = seconds
        return out

    def sync_weights(self, model: Any) -> None:
        """Copy the trainer's parameters into the child's shared-memory ones (the child must be idle: the
        trainer calls this between requests), then let the child refresh what it derives from them."""
        import torch

        named = dict(model.named_parameters())
        if list(named) != self._names:
            raise ValueError("hf_process: the model given to sync_weights has other parameters than the one the "
                             "rollout process was started with")
        with torch.no_grad():
            for name, buf in self._shared.items():
                buf.copy_(named[name].detach())
        self._request(("synced",), timeout=self.timeout_s, what="refreshing its weights")

    def close(self) -> None:
        """Stop the child (also done when the backend is garbage-collected or the trainer exits: it is a daemon)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._proc.is_alive():
                self._conn.send(("stop",))
                self._proc.join(5)
        except (OSError, BrokenPipeError):
            pass
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        self._conn.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to do
            pass

    # -- messages -----------------------------------------------------------------------------------------
    def _request(self, message: tuple, *, timeout: float, what: str) -> Any:
        """Send ``message`` and wait for the answer, watching the child: it may die or hang."""
        if self._closed:
            raise RolloutProcessError(f"the hf_process rollout child is no longer usable: {self._gone or 'close() stopped it'}")
        try:
            self._conn.send(message)
        except (OSError, BrokenPipeError) as exc:
            raise self._died(what) from exc
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._conn.poll(min(1.0, max(0.0, deadline - time.monotonic()))):
                    status, *payload = self._conn.recv()
                    break
            except (EOFError, OSError, BrokenPipeError) as exc:
                raise self._died(what) from exc
            if not self._proc.is_alive():
                raise self._died(what)
            if time.monotonic() >= deadline:
                self._proc.kill()  # its state is unknown now: no later request may use it
                self._closed = True
                self._gone = (f"the hf_process rollout child (pid {self._proc.pid}) did not answer within {timeout:.0f} s "
                              f"while {what}; it was stopped. Raise rollout.params.timeout_s (or start_timeout_s) if it "
                              "is only slow")
                raise RolloutProcessError(self._gone)
        if status == "error":
            raise RolloutProcessError(f"the hf_process rollout child failed while {what}:\n{payload[0]}")
        return payload[0] if len(payload) == 1 else payload

    def _died(self, what: str) -> RolloutProcessError:
        import signal

        self._proc.join(1)
        code = self._proc.exitcode
        self._closed = True
        how = (f"was killed by signal {signal.Signals(-code).name}" if code is not None and code < 0
               else f"exited with code {code}")
        hint = " (SIGKILL: often the kernel's out-of-memory killer)" if code == -signal.SIGKILL else ""
        if what == "starting" and code == 1:
            hint = (" (its error is printed above; a Python script that trains must guard its top level with "
                    "`if __name__ == '__main__':`, since the child, started with spawn, imports it again)")
        self._gone = (f"the hf_process rollout child (pid {self._proc.pid}) {how}{hint} while {what}; "
                      "the run cannot continue without its sampler")
        return RolloutProcessError(self._gone)


def _child_main(conn: Any) -> None:
    """The child's loop: build the model on the shared weights, then answer requests one at a time."""
    import torch

    backend = model = None
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the trainer is gone
            return
        kind = message[0]
        try:
            if kind == "stop":
                return
            if kind == "init":
                model, backend = _build(*message[1:])
                from r1gym.core import precision

                conn.send(("ok", (bool(getattr(backend, "exact_logprobs", False)), precision.chosen())))
            elif kind == "generate":
                prompts, params, rng = message[1:]
                torch.set_rng_state(rng)
                t0 = time.perf_counter()
                gens = backend.generate(prompts, params)
                conn.send(("ok", gens, torch.get_rng_state(), time.perf_counter() - t0))
            elif kind == "synced":
                backend.sync_weights(model)
                conn.send(("ok", None))
            else:
                conn.send(("error", f"unknown request {kind!r}"))
        except Exception:
            conn.send(("error", traceback.format_exc()))


def _build(model_cls: Any, config: Any, tokenizer: Any, shared: dict[str, Any], hf_params: dict[str, Any],
           threads: int, onednn_on: bool, dtype: Any, pins: dict[str, Any]) -> tuple[Any, Any]:
    import torch

    from r1gym.core import onednn, precision
    from r1gym.plugins.hf_rollout.backend import HFBackend

    torch.set_num_threads(threads)
    onednn.select("onednn" if onednn_on else "torch")
    torch.set_default_dtype(dtype)
    try:
        model = model_cls(config)
    finally:
        torch.set_default_dtype(torch.float32)
    params = dict(model.named_parameters())
    if list(params) != list(shared):
        raise ValueError(f"the rollout process built {type(model).__name__} with other parameters than the trainer's")
    for name, p in params.items():
        p.data = shared[name]  # tied weights are one Parameter: both names follow
    model.eval().requires_grad_(False)
    onednn.patch(model)
    precision.use_pins(pins)
    return model, HFBackend(model, tokenizer, **hf_params)
