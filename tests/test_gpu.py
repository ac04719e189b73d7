"""What only a CUDA GPU can show: the trainer on a GPU equals the trainer on the CPU, NCCL data parallelism, and
vLLM's CUDA build. Every test here is marked ``gpu`` and skipped with that reason where torch sees no GPU (this
project's own machines); ``bench/gpu_smoke.sh`` is the timed end-to-end check for a GPU machine."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def test_trainer_device_auto_is_the_cpu_here_and_an_absent_gpu_is_a_clear_error():
    from omegaconf import OmegaConf

    from r1gym.core.runtime import training_device

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: auto picks it")
    assert training_device(OmegaConf.create({"device": "auto"})) == torch.device("cpu")
    with pytest.raises(ValueError, match="sees no CUDA GPU"):
        training_device(OmegaConf.create({"device": "cuda"}))


def _one_update(model_dir: Path, run_dir: Path, device: str) -> tuple[dict, dict, tuple]:
    """One GRPO update of the tiny model on fixed episodes, then one seeded sample through the hf backend."""
    sys.path.insert(0, str(Path(__file__).parent))
    import ddp_worker

    from r1gym.core.config import compose
    from r1gym.core.grpo import GRPOTrainer

    cfg = compose(["model=hf", f"model.name_or_path={model_dir}", "trainer=cpu", f"trainer.device={device}",
                   "trainer.matmul=torch", "logger=jsonl_only", "algo.group_size=2", "algo.prompts_per_step=4",
                   "algo.micro_batch_size=2", "algo.optim.lr=1e-2", "algo.optim.fused=false"])
    trainer = GRPOTrainer(cfg, run_dir)
    trainer.setup()
    metrics, _ = trainer.update(ddp_worker.fixed_episodes(4, 2))
    state = {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}
    return state, metrics, ddp_worker.sample(trainer)


@pytest.mark.gpu
def test_a_grpo_update_on_the_gpu_equals_the_update_on_the_cpu(tiny_model_dir, tmp_path):
    cpu_state, cpu_metrics, _ = _one_update(tiny_model_dir, tmp_path / "cpu", "cpu")
    gpu_state, gpu_metrics, (tokens, logprobs) = _one_update(tiny_model_dir, tmp_path / "gpu", "cuda")
    for name, w in cpu_state.items():  # TF32 may be on for CUDA matmuls: a looser tolerance than CPU vs CPU
        torch.testing.assert_close(gpu_state[name], w, rtol=1e-3, atol=1e-4, msg=f"{name} differs")
    assert gpu_metrics["loss"] == pytest.approx(cpu_metrics["loss"], rel=1e-3, abs=1e-6)
    assert gpu_metrics["grad_norm"] == pytest.approx(cpu_metrics["grad_norm"], rel=1e-3)
    assert len(tokens) == len(logprobs) > 0  # the hf rollout backend samples on the GPU


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs for NCCL data parallelism")
def test_two_gpu_nccl_update_equals_the_single_gpu_update(tiny_model_dir, tmp_path):
    import socket

    import torch.multiprocessing as mp

    import ddp_worker

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ddp_worker.run(0, 1, port, str(tiny_model_dir), str(tmp_path), "token_mean", "ddp", ("trainer.device=auto",))
    mp.start_processes(ddp_worker.run, args=(2, port + 1, str(tiny_model_dir), str(tmp_path), "token_mean", "ddp",
                                             ("trainer.device=auto", "trainer.backend=nccl")),
                       nprocs=2, join=True, start_method="spawn")
    one, two = torch.load(tmp_path / "world1.pt"), torch.load(tmp_path / "world2-ddp.pt")
    for name, w in one["state"].items():
        torch.testing.assert_close(two["state"][name].cpu(), w.cpu(), rtol=1e-3, atol=1e-4, msg=f"{name} differs")


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM's CUDA build: pip install 'r1gym[vllm]'")
def test_vllm_on_the_gpu_matches_the_trainer_and_follows_weight_updates(tmp_path):
    from r1gym.core.models import resolve_model_path

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, str(Path(__file__).parent / "vllm_check.py"), resolve_model_path("smollm2-135m")],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, (out.stdout + out.stderr)[-3000:]
    result = json.loads(line[len("RESULT "):])
    assert result["tokens"] > 0 and result["before"] < 1e-2 and result["after"] < 1e-2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: torch sees none on this machine")
def test_cuda_rng_state_is_checkpointed(tmp_path):
    """A checkpoint's RNG states include every GPU's generator: draws on the GPU after a restore repeat the
    draws after the save (issue 16: without them a GPU run cannot resume on the same trajectory)."""
    from r1gym.core.checkpoint import rng_state, set_rng_state

    torch.cuda.manual_seed_all(7)
    torch.rand(4, device="cuda")  # CUDA is initialised and its generator has moved
    state = rng_state()
    assert len(state["cuda"]) == torch.cuda.device_count()
    torch.save(state, tmp_path / "rng.pt")
    expected = torch.rand(8, device="cuda").cpu()
    torch.rand(100, device="cuda")
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=False))
    assert torch.equal(torch.rand(8, device="cuda").cpu(), expected)
