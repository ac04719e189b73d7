"""Worker for tests/test_distributed.py: two GRPO updates on fixed episodes (two micro-batches per rank), in one process or as one rank of a
gloo process group (started with torch.multiprocessing, as torchrun would start it)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import torch


def fixed_episodes(n_groups: int, group_size: int, seed: int = 0) -> list:
    """The same episodes in every process: random prompts and completions, rewards with variance per group."""
    from r1gym.core.rollout import Episode

    rng = random.Random(seed)
    out = []
    for g in range(n_groups):
        prompt = [rng.randrange(10, 500) for _ in range(rng.randrange(3, 7))]
        for _ in range(group_size):
            n = rng.randrange(2, 9)
            out.append(Episode(group=g, task_index=g, prompt_ids=prompt,
                               completion_ids=[rng.randrange(10, 500) for _ in range(n)], completion_mask=[1] * n,
                               sampler_logprobs=[-1.0] * n, reward=float(rng.random() < 0.5), terminated=True))
    return out


def sample(trainer) -> tuple[list[int], list[float]]:
    """One seeded sample through the trainer's rollout backend, as a rollout takes it (weights gathered)."""
    from r1gym.core.rollout import SamplingParams

    torch.manual_seed(0)
    with trainer.gathered():
        (gen,) = trainer.backend.generate([[11, 12, 13, 14]], SamplingParams(temperature=1.0, max_new_tokens=6))
    return gen.token_ids, gen.logprobs


def run(rank: int, world: int, port: int, model_dir: str, out_dir: str, aggregation: str,
        trainer_name: str = "ddp", overrides: tuple[str, ...] = (), uneven: bool = False) -> None:
    """``uneven``: 3 groups, all on rank 0 and none on rank 1 (as dynamic sampling can leave them)."""
    from r1gym.core.config import compose
    from r1gym.core.distributed import mean_metrics
    from r1gym.core.grpo import GRPOTrainer

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world), DS_ACCELERATOR="cpu")
    torch.set_num_threads(1)
    cfg = compose(["model=hf", f"model.name_or_path={model_dir}", f"trainer={trainer_name}" if world > 1 else "trainer=cpu",
                   "trainer.threads=1", "trainer.matmul=torch", "logger=jsonl_only", "algo.group_size=2",
                   "algo.prompts_per_step=4", "algo.micro_batch_size=2", f"algo.loss_aggregation={aggregation}",
                   "algo.optim.lr=1e-2", "algo.optim.fused=false", *overrides])
    trainer = GRPOTrainer(cfg, Path(out_dir) / f"run-{world}-{rank}")
    trainer.setup()
    episodes = fixed_episodes(4, 2)
    if uneven:
        episodes = [e for e in episodes if e.group < 3]
        mine = episodes if rank == 0 else []
    else:
        mine = [e for e in episodes if e.group % world == rank]  # whole groups per rank, as Dist.shard deals them
    before = sample(trainer)  # the sampler sees the weights before the update (and may keep views of them) ...
    trainer.update(mine)
    metrics, _ = trainer.update(mine)  # a second step: Adam's first moves every weight by +-lr whatever |g| is
    after = sample(trainer)  # ... and must see the updated ones after it
    metrics = mean_metrics(metrics, trainer.dist)
    with trainer.gathered():  # ZeRO-3 keeps a shard of each weight per rank: gather them (every rank)
        state = {name: t.detach().clone() for name, t in trainer.model.state_dict().items()}
    if rank == 0:
        torch.save({"state": state, "metrics": metrics, "sample_before": before, "sample_after": after},
                   Path(out_dir) / f"world{world}{'-' + trainer_name if world > 1 else ''}{'-uneven' * uneven}.pt")
    if world > 1:
        torch.distributed.barrier()  # leave together: a rank destroying its group while rank 0 still saves can abort
        torch.distributed.destroy_process_group()


def run_sft(rank: int, world: int, port: int, model_dir: str, out_dir: str, data: str, trainer_name: str = "ddp") -> None:
    """One SFT step on ``data``: in one process, or as one rank of 2 (``trainer_name``)."""
    from r1gym.core.config import compose
    from r1gym.core.sft import SFTTrainer

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world), DS_ACCELERATOR="cpu")
    torch.set_num_threads(1)
    cfg = compose(["stage=sft", "model=hf", f"model.name_or_path={model_dir}", f"sft.data=[{data}]",
                   f"trainer={trainer_name}" if world > 1 else "trainer=cpu", "trainer.threads=1", "trainer.matmul=torch",
                   "logger=jsonl_only", "sft.batch_tokens=100000", "sft.micro_batch_tokens=64", "sft.max_steps=1",
                   "sft.optim.lr=1e-2", "sft.optim.fused=false"])
    trainer = SFTTrainer(cfg, Path(out_dir) / f"sft-{world}-{rank}")
    trainer.setup()
    metrics = trainer.train_step()
    with trainer.gathered():
        state = {name: t.detach().clone() for name, t in trainer.model.state_dict().items()}
    if rank == 0:
        torch.save({"state": state, "metrics": metrics},
                   Path(out_dir) / f"sft-world{world}{'-' + trainer_name if world > 1 else ''}.pt")
    if world > 1:
        torch.distributed.barrier()  # leave together: a rank destroying its group while rank 0 still saves can abort
        torch.distributed.destroy_process_group()


def choose_precision(rank: int, world: int, port: int, out_dir: str) -> None:
    """One ``auto`` choice as one rank of ``world``: each rank brings timings of its own (on rank 1 bf16 is
    clearly faster, on rank 0 it is a near-tie), and writes what it keeps."""
    from r1gym.core import distributed, precision

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    distributed.init("gloo")
    timings = {"null": 1.0, "bf16": 0.5 if rank == 1 else 0.99}
    choice = precision.choose(timings, ("null", "bf16"))
    Path(out_dir, f"choice-{rank}.txt").write_text(choice)
    distributed.shutdown()
