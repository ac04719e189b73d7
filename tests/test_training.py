"""The training core (r1gym.core.training, r1gym.core.strategies): the DDP strategy's update over two processes
equals the one-process update, the shell checkpoints every save_every steps and at the end, and GRPO's variants
are looked up once, at construction and set-up."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
import torch

from r1gym.core.config import compose
from r1gym.core.distributed import Dist
from r1gym.core.evaluation import eval_size
from r1gym.core.strategies import DDPStrategy, DeepSpeedStrategy, PlainStrategy, choose_strategy
from r1gym.core.training import TrainerShell


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_strategy_update_over_two_processes_equals_the_plain_update(tmp_path):
    import torch.multiprocessing as mp

    import strategy_worker

    strategy_worker.update(0, 1, 0, str(tmp_path / "one.pt"))
    for name in ("chosen", "plain"):
        mp.start_processes(strategy_worker.update, args=(2, _free_port(), str(tmp_path / f"two-{name}.pt"), name),
                           nprocs=2, join=True, start_method="spawn")
    one, two, unreduced = (torch.load(tmp_path / f) for f in ("one.pt", "two-chosen.pt", "two-plain.pt"))
    assert (one["strategy"], two["strategy"]) == ("plain", "ddp")
    torch.manual_seed(1)
    base = torch.nn.Linear(3, 1).state_dict()
    for k, w in one["state"].items():
        assert not torch.equal(w, base[k])  # the update moved the weights
        torch.testing.assert_close(two["state"][k], w, rtol=1e-6, atol=1e-7)
    assert two["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-6) and one["grad_norm"] > 0.5  # clipped
    # without the gradient sum, rank 0 steps on its half of the batch only: the test can tell
    assert not torch.allclose(unreduced["state"]["weight"], one["state"]["weight"], atol=1e-4)


def test_the_strategy_is_chosen_from_the_config_and_only_deepspeed_runs_idle_passes():
    plain = choose_strategy(SimpleNamespace(deepspeed={}), Dist(), 1.0)
    ddp = choose_strategy(SimpleNamespace(deepspeed={}), Dist(0, 2), 1.0)
    ds = choose_strategy(SimpleNamespace(deepspeed={"stage": 3, "config": {"gradient_clipping": 0.3}}), Dist(), 1.0)
    assert [type(s) for s in (plain, ddp, ds)] == [PlainStrategy, DDPStrategy, DeepSpeedStrategy]
    assert ds.zero3 and ds.config["gradient_clipping"] == 0.3  # raw DeepSpeed keys win over ours
    assert (plain.needs_pass(0.0), plain.needs_pass(0.25), ds.needs_pass(0.0)) == (False, True, True)
    assert plain.lockstep([[0, 1], [2]], [0]) == [([0, 1], True), ([2], True)]
    with pytest.raises(ValueError, match="stages 1, 2 and 3"):
        choose_strategy(SimpleNamespace(deepspeed={"stage": 4}), Dist(), 1.0)
    with pytest.raises(RuntimeError, match="setup\\(\\) wraps one"):
        plain.forward(torch.zeros(1))


class CountingSampler:
    """A data position that counts the steps taken (checkpointed like the real samplers)."""

    def __init__(self):
        self.pos = 0

    def state_dict(self) -> dict[str, int]:
        return {"pos": self.pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.pos = state["pos"]


class ToyTrainer(TrainerShell):
    """The shell around a step that nudges the model's weights with one optimizer step."""

    def __init__(self, cfg, run_dir, unscorable: float = 0.0):
        super().__init__(cfg, run_dir, host=None, optim_cfg=cfg.algo.optim)
        self.unscorable = unscorable

    def build_data(self, model, tokenizer):
        return CountingSampler(), self.cfg.trainer.max_steps, None

    def forward_module(self, model):
        return model

    def training_step(self):
        self.sampler.pos += 1
        loss = sum(p.sum() for p in self.model.parameters() if p.requires_grad) * 1e-3
        self.strategy.backward(loss)
        self.strategy.step()
        self.scheduler.step()
        return ({"loss": float(loss.detach()), "episodes": 4.0, "unscorable/count": 4.0 * self.unscorable,
                 "unscorable/judge": 4.0 * self.unscorable},
                [{"unscorable": {"judge": "timeout"}}] if self.unscorable else [])


def _toy_cfg(model_dir, run_dir, *extra):
    return compose([f"model.name_or_path={model_dir}", "trainer.threads=1", "trainer.matmul=torch",
                    "logger=jsonl_only", f"run_dir={run_dir}", "trainer.max_steps=5", "trainer.save_every=2",
                    "trainer.keep_checkpoints=10", *extra])


def test_the_shell_checkpoints_every_save_every_steps_and_at_the_end_and_resumes_there(tiny_model_dir, tmp_path):
    summary = ToyTrainer(_toy_cfg(tiny_model_dir, tmp_path), tmp_path).train()
    assert summary["status"] == "finished" and summary["step"] == 5
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*")) == \
        ["step_000002", "step_000004", "step_000005"]
    again = ToyTrainer(_toy_cfg(tiny_model_dir, tmp_path, "trainer.max_steps=7"), tmp_path)
    assert again.setup() == 5 and again.sampler.pos == 5  # the data position came back with the step
    assert again.scheduler.last_epoch == 5


class EvaluatingToy(ToyTrainer):
    schedule = ToyTrainer.NO_EVAL

    def eval_schedule(self):
        return self.schedule

    def evaluate(self, step):
        self.evaluated.append(step)
        return {"eval/accuracy": 0.5}


@pytest.mark.parametrize(("schedule", "expected"), [
    ({"at_start": True, "every": 2, "at_end": True}, [0, 2, 4, 5]),
    ({"at_start": False, "every": 3, "at_end": False}, [3]),
    (ToyTrainer.NO_EVAL, []),
])
def test_the_shell_evaluates_on_its_schedule(tiny_model_dir, tmp_path, schedule, expected):
    trainer = EvaluatingToy(_toy_cfg(tiny_model_dir, tmp_path), tmp_path)
    trainer.schedule, trainer.evaluated = schedule, []
    summary = trainer.train()
    assert trainer.evaluated == expected
    assert ("eval_start" in summary, "eval_end" in summary) == (schedule["at_start"], schedule["at_end"])


def test_the_shell_stops_a_run_whose_rewards_stopped_working_and_keeps_its_last_step(tiny_model_dir, tmp_path):
    trainer = ToyTrainer(_toy_cfg(tiny_model_dir, tmp_path, "trainer.unscorable_patience=3",
                                  "trainer.save_every=100"), tmp_path, unscorable=0.75)
    with pytest.raises(RuntimeError, match=r"stopping at step 3: .*failing: judge \(3 of 4\); .* judge: timeout"):
        trainer.train()
    assert [p.name for p in (tmp_path / "checkpoints").glob("step_*")] == ["step_000003"]


@pytest.fixture()
def varied_rewards(monkeypatch):
    """A plugin host of the test's own with tests/plugins/varied_reward.py (char_variety: rewards that vary
    within a group) registered through its hooks; the trainers are given it (``host=``)."""
    import importlib

    from r1gym.core.plugins import load_plugins
    from tests.conftest import TESTS

    monkeypatch.syspath_prepend(str(TESTS / "plugins"))
    return load_plugins(autoload=False, extra=[("varied_reward", importlib.import_module("varied_reward"))])


def test_grpo_looks_its_variants_up_once_not_per_step(varied_rewards, tiny_model_dir, tmp_path, monkeypatch):
    from r1gym.core import advantages, losses
    from r1gym.core.grpo import GRPOTrainer

    cfg = compose([f"model.name_or_path={tiny_model_dir}", "env=arithmetic", "algo.prompts_per_step=2",
                   "algo.group_size=4", "algo.micro_batch_size=2", "rollout.max_new_tokens=6", "trainer.threads=1",
                   "algo.beta=0.04", "algo.num_iterations=2", "+env.kwargs.rewards.char_variety=1.0", "algo.is_correction=truncate", "logger=jsonl_only",
                   f"run_dir={tmp_path}"])
    trainer = GRPOTrainer(cfg, tmp_path, host=varied_rewards)
    trainer.setup()

    def looked_up(*args, **kwargs):
        raise AssertionError("a variant was looked up by name during a step")

    monkeypatch.setattr(losses, "get_loss_aggregation", looked_up)
    monkeypatch.setattr(advantages, "get_advantage_estimator", looked_up)
    monkeypatch.setattr(losses, "micro_batch_weight", looked_up)
    metrics, _ = trainer.train_step()
    assert metrics["grad_norm"] > 0 and "kl" in metrics and "is/ratio_mean" in metrics


@pytest.mark.parametrize(("settings", "available", "expected"), [
    ({"num_problems": None, "greedy": True, "samples": 8}, 30, (30, 1)),
    ({"num_problems": 10, "greedy": False, "samples": 4}, 30, (10, 4)),
    ({"num_problems": 50, "greedy": False, "samples": 0}, 30, (30, 1)),
])
def test_eval_size_caps_problems_at_what_exists_and_takes_one_greedy_sample(settings, available, expected):
    assert eval_size(SimpleNamespace(**settings), available) == expected


def test_grpo_with_a_reference_model_resumes_on_the_uninterrupted_trajectory(varied_rewards, tiny_model_dir,
                                                                              tmp_path, monkeypatch):
    """The reference is the base model also after a resume (not the checkpoint's policy), and set-up draws
    nothing from the RNGs after they are restored: steps 3 and 4 of a run cut after step 2 equal the whole run's."""
    import json

    from r1gym.core.grpo import GRPOTrainer

    def cfg(run_dir):
        return compose([f"model.name_or_path={tiny_model_dir}", "env=arithmetic", "algo.prompts_per_step=2",
                        "algo.group_size=4", "algo.micro_batch_size=4", "rollout.max_new_tokens=6",
                        "trainer.threads=1", "trainer.matmul=torch", "algo.beta=0.5", "algo.optim.lr=1e-2", "trainer.max_steps=4",
                        "trainer.save_every=2", "+env.kwargs.rewards.char_variety=1.0", "eval.at_start=false",
                        "eval.at_end=false", "logger=jsonl_only", f"run_dir={run_dir}"])

    def metrics(run_dir):
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: (r["loss"], r["kl"], r["grad_norm"]) for r in rows}

    GRPOTrainer(cfg(tmp_path / "whole"), tmp_path / "whole", host=varied_rewards).train()

    class Killed(Exception):
        pass

    real_step, calls = GRPOTrainer.train_step, []

    def dying(self):
        calls.append(1)
        if len(calls) == 3:
            raise Killed
        return real_step(self)

    monkeypatch.setattr(GRPOTrainer, "train_step", dying)
    with pytest.raises(Killed):
        GRPOTrainer(cfg(tmp_path / "cut"), tmp_path / "cut", host=varied_rewards).train()
    monkeypatch.setattr(GRPOTrainer, "train_step", real_step)
    assert GRPOTrainer(cfg(tmp_path / "cut"), tmp_path / "cut", host=varied_rewards).train()["status"] == "finished"
    whole, cut = metrics(tmp_path / "whole"), metrics(tmp_path / "cut")
    assert whole[4][1] > 0  # the KL term is on
    assert cut[3] == whole[3] and cut[4] == whole[4]
