"""Worker for tests/test_training.py: one least-squares update through a training strategy, in one process
or as one rank of a gloo process group (started with torch.multiprocessing, as torchrun would start it)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import torch

ROWS = 8


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(ROWS, 3, generator=g), torch.randn(ROWS, 1, generator=g)


def update(rank: int, world: int, port: int, out: str, strategy_name: str = "chosen") -> None:
    """Each rank fits its rows (every ``world``-th), its loss weighted as its share of the global mean, then
    the strategy steps; rank 0 saves the weights and gradient norm. ``strategy_name="plain"`` forces the
    one-process strategy (no gradient reduction) whatever the world."""
    from r1gym.core import distributed
    from r1gym.core.strategies import PlainStrategy, choose_strategy

    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist = distributed.init("gloo")
    torch.manual_seed(1)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    strategy = choose_strategy(SimpleNamespace(deepspeed={}), dist, max_grad_norm=0.5) \
        if strategy_name == "chosen" else PlainStrategy(dist, max_grad_norm=0.5)
    strategy.wrap(model, optimizer)
    x, y = data()
    mine = list(range(dist.rank, ROWS, dist.world))
    chunks = strategy.lockstep([mine[:2], mine[2:]], mine[:1])  # two micro-batches per rank
    for rows, _ in chunks:
        loss = ((strategy.forward(x[rows]) - y[rows]) ** 2).sum() / ROWS
        strategy.backward(loss)
    grad_norm = strategy.step()
    if dist.is_main:
        torch.save({"strategy": strategy.name, "grad_norm": grad_norm,
                    "state": {k: v.clone() for k, v in model.state_dict().items()}}, out)
    distributed.shutdown()
