"""Generation overlapped with training, one step off-policy (``rollout.overlap=true``).

Where the rollout backend generates in a process of its own (``hf_process``: a second CPU process;
``vllm_server``: another server), the trainer need not wait for it: step k's update runs while the backend
samples step k+1. The order of one step (:meth:`r1gym.core.grpo.GRPOTrainer.train_step`):

1. wait for this step's rollout (started during the previous step; the first step starts its own);
2. if the trainer's weights changed since the backend last got them, sync them now, while the backend is idle
   (a sync during a rollout would mix two policies in one batch, and vLLM refuses to reset its prefix cache
   while requests run);
3. start the next step's rollout in a background thread (:class:`RolloutAhead`) on these weights;
4. update the policy on this step's episodes, while the backend samples.

So the episodes of step k+1 were sampled by the weights before step k's update: a **policy lag** of one
update, recorded per sample (``Episode.policy_lag``, ``samples.jsonl``, metric ``rollout/policy_lag``). The
trainer corrects it as it corrects a sampler whose numbers are not its own: the sampler's log-probs are the
behaviour policy's, and the truncated importance weight min(pi_current / pi_sampler, cap) multiplies each
token's clipped-surrogate term (``algo.is_correction``; ``auto`` turns it on with the overlap even for an exact
sampler). The clip stays around the current policy (the ``old`` log-probs are recomputed by the trainer):
this is the decoupled PPO objective of AReaL (behaviour policy for the importance weight, proximal policy for
the trust region) at a staleness of one. docs/scaling.md says more, with references.

Evaluation and checkpoints drain the rollout in flight first (it is kept, not thrown away): evaluation then
samples from the trainer's current weights, and a checkpoint stores the drained episodes with the data
position (``PromptSampler.pending``), so a resumed run trains on them next, as the uninterrupted run would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

#: built-in backends that generate in a process of their own; any backend can say so itself with a true
#: ``separate_process`` attribute (on the backend object or on its registered factory)
OWN_PROCESS_BACKENDS = ("hf_process", "vllm_server")


def generates_elsewhere(name: str, backend_or_factory: Any = None) -> bool:
    """Whether the backend registered as ``name`` (built, or its factory) samples in a process of its own."""
    return name in OWN_PROCESS_BACKENDS or bool(getattr(backend_or_factory, "separate_process", False))


def overlap_problem(name: str, backend_or_factory: Any = None, *, distributed: bool = False) -> str | None:
    """Why ``rollout.overlap=true`` cannot run with this backend (``None`` when it can)."""
    if distributed:
        return ("rollout.overlap=true runs with one trainer process only (a rollout thread beside data-parallel "
                "collectives could interleave them); set rollout.overlap=false under trainer=ddp or DeepSpeed")
    if not generates_elsewhere(name, backend_or_factory):
        return (f"rollout.overlap=true needs a rollout backend that generates in a process of its own, so that it "
                f"can sample while the trainer trains; rollout.backend={name!r} runs in the trainer's process "
                f"(it would only take turns with the update). Backends that allow it: {', '.join(OWN_PROCESS_BACKENDS)} "
                "(e.g. rollout=hf_process rollout.params.threads=1 trainer.threads=1), or set rollout.overlap=false")
    return None


class RolloutAhead:
    """One rollout at a time in a background thread: :meth:`start` it, :meth:`result` waits for it (and
    raises what it raised). The thread only drives the backend (sending requests, scoring completions): the
    sampling itself runs in the backend's process, so it does not compete with the update for the GIL. It is a
    daemon thread: a run that fails during its update exits without waiting for the rollout in flight."""

    def __init__(self) -> None:
        self._future: Future | None = None

    @property
    def in_flight(self) -> bool:
        return self._future is not None

    def start(self, fn: Callable[[], Any]) -> None:
        if self._future is not None:
            raise RuntimeError("a rollout is already in flight; take its result() first")
        future: Future = Future()

        def run() -> None:
            future.set_running_or_notify_cancel()
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the trainer by result()
                future.set_exception(exc)

        threading.Thread(target=run, name="r1gym-rollout-ahead", daemon=True).start()
        self._future = future

    def result(self) -> Any:
        """The rollout's result (waiting for it), or ``None`` when none is in flight."""
        future, self._future = self._future, None
        return None if future is None else future.result()
