"""Data-parallel GRPO (trainer=ddp, deepspeed_zero2, deepspeed_zero3) on 2 CPU processes with gloo: two updates
equal the single-process updates on the same episodes (same loss, gradient norm, weights and next samples), for
each loss aggregation; a killed 2-process run resumes."""

from __future__ import annotations

import socket

import pytest
import torch

from r1gym.core.distributed import Dist, mean_metrics


def test_whole_groups_are_dealt_round_robin_and_one_process_is_rank_0_of_1():
    assert Dist(1, 2).shard([10, 11, 12, 13, 14]) == [11, 13] and Dist(0, 2).shard([10, 11, 12]) == [10, 12]
    single = Dist()
    assert not single.enabled and single.is_main and single.shard([1, 2]) == [1, 2]
    assert mean_metrics({"a": 1.0}, single) == {"a": 1.0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CASES = [("ddp", "seq_mean_token_mean"), ("ddp", "token_mean"), ("ddp", "seq_mean_token_sum_norm"),
         ("deepspeed_zero2", "seq_mean_token_mean"), ("deepspeed_zero2", "token_mean"),
         ("deepspeed_zero3", "seq_mean_token_mean"), ("deepspeed_zero3", "token_mean")]


@pytest.mark.parametrize(("trainer", "aggregation"), CASES)
def test_two_process_update_equals_the_single_process_update(tiny_model_dir, tmp_path, trainer, aggregation):
    import torch.multiprocessing as mp

    import ddp_worker

    if trainer.startswith("deepspeed"):
        pytest.importorskip("deepspeed", reason="DeepSpeed is not installed: pip install 'r1gym[deepspeed]'")
    ddp_worker.run(0, 1, _free_port(), str(tiny_model_dir), str(tmp_path), aggregation)
    mp.start_processes(ddp_worker.run, args=(2, _free_port(), str(tiny_model_dir), str(tmp_path), aggregation, trainer),
                       nprocs=2, join=True, start_method="spawn")
    from transformers import AutoModelForCausalLM

    one, two = torch.load(tmp_path / "world1.pt"), torch.load(tmp_path / f"world2-{trainer}.pt")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    changed = 0
    # ZeRO-3 reduce-scatters gradients in another order: Adam's first step divides by |g|, so an element whose
    # gradient is near Adam's eps moves by up to ~4e-6 of the 1e-2 step (a missing reduction moves it by 1e-2)
    atol = 2e-5 if trainer == "deepspeed_zero3" else 1e-6
    for name, w in one["state"].items():
        torch.testing.assert_close(two["state"][name], w, rtol=1e-5, atol=atol, msg=f"{name} differs")
        changed += int(not torch.equal(w, base[name]))
    assert changed > 0  # the update moved the weights
    assert one["metrics"]["loss"] == pytest.approx(two["metrics"]["loss"], rel=1e-5, abs=1e-7)
    assert one["metrics"]["grad_norm"] == pytest.approx(two["metrics"]["grad_norm"], rel=1e-5)
    assert one["metrics"]["grad_norm"] > 0  # there was something to learn
    # the rollout backend samples from the updated weights on every rank (ZeRO-3 gathers them per rollout)
    assert two["sample_after"][0] == one["sample_after"][0]
    torch.testing.assert_close(two["sample_after"][1], one["sample_after"][1], rtol=1e-4, atol=1e-5)
    assert max(abs(a - b) for a, b in zip(one["sample_after"][1], one["sample_before"][1])) > 1e-3


@pytest.mark.parametrize("trainer", ["ddp", "deepspeed_zero2", "deepspeed_zero3"])
def test_a_rank_with_no_groups_takes_part_and_the_update_is_the_single_process_one(tiny_model_dir, tmp_path, trainer):
    """Dynamic sampling can leave the ranks uneven: 3 groups on rank 0, none on rank 1. Rank 1 must still join
    every collective (DeepSpeed: as many forward/backward passes as rank 0) and add nothing to the update."""
    import torch.multiprocessing as mp

    import ddp_worker

    if trainer.startswith("deepspeed"):
        pytest.importorskip("deepspeed", reason="DeepSpeed is not installed: pip install 'r1gym[deepspeed]'")
    ddp_worker.run(0, 1, _free_port(), str(tiny_model_dir), str(tmp_path), "token_mean", uneven=True)
    mp.start_processes(ddp_worker.run, args=(2, _free_port(), str(tiny_model_dir), str(tmp_path), "token_mean",
                                             trainer, (), True), nprocs=2, join=True, start_method="spawn")
    one, two = torch.load(tmp_path / "world1-uneven.pt"), torch.load(tmp_path / f"world2-{trainer}-uneven.pt")
    for name, w in one["state"].items():
        torch.testing.assert_close(two["state"][name], w, rtol=1e-5, atol=2e-5, msg=f"{name} differs")
    for key in ("loss", "grad_norm", "episodes", "reward/mean", "trained_tokens"):
        assert one["metrics"][key] == pytest.approx(two["metrics"][key], rel=1e-5, abs=1e-7), key
    assert one["metrics"]["episodes"] == 6 and one["metrics"]["grad_norm"] > 0


@pytest.mark.parametrize("trainer", ["ddp", "deepspeed_zero2", "deepspeed_zero3"])
def test_a_killed_two_process_run_resumes_where_it_stopped(tiny_model_dir, tmp_path, trainer):
    """torchrun with 2 gloo processes, SIGKILLed after its third checkpoint, resumed with resume=RUN."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    def common() -> list[str]:  # a fresh rendezvous port per launch
        return ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
                "-m", "r1gym.core.cli", "train"]

    if trainer.startswith("deepspeed"):
        pytest.importorskip("deepspeed", reason="DeepSpeed is not installed: pip install 'r1gym[deepspeed]'")
    args = [f"trainer={trainer}", "model=hf", f"model.name_or_path={tiny_model_dir}", "env=arithmetic_fewshot",
            "algo.group_size=2", "algo.prompts_per_step=2", "rollout.max_new_tokens=8", "trainer.max_steps=40",
            "trainer.save_every=1", "trainer.keep_checkpoints=100", "trainer.threads=1", "logger=jsonl_only",
            "eval.at_start=false", "eval.at_end=false", f"run_dir={run}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DS_ACCELERATOR": "cpu"}
    first = subprocess.Popen([sys.executable, *common(), *args], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (run / "checkpoints" / "step_000003").exists():
        assert first.poll() is None, first.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # torchrun's workers run in sessions of their own: kill the launcher and every worker of this run
    os.killpg(first.pid, signal.SIGKILL)
    subprocess.run(["pkill", "-9", "-f", f"run_dir={run}"], check=False)
    first.wait()
    while subprocess.run(["pgrep", "-f", f"run_dir={run}"], capture_output=True).returncode == 0:
        time.sleep(0.05)
    second = subprocess.run([sys.executable, *common(), f"resume={run}"], env=env, capture_output=True, timeout=600)
    assert second.returncode == 0, (second.stdout + second.stderr).decode()[-3000:]
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 40 and set(steps) == set(range(1, 41)) and steps.count(1) == 1
    assert json.loads((run / "manifest.json").read_text())["status"] == "finished"
    if trainer.startswith("deepspeed"):  # DeepSpeed's optimizer partitions were saved, pruned with the rest
        kept = sorted(p.name for p in (run / "checkpoints").glob("step_*"))
        assert sorted(p.name for p in (run / "checkpoints" / "deepspeed").glob("step_*")) == kept


@pytest.mark.parametrize("trainer", ["ddp", "deepspeed_zero2", "deepspeed_zero3"])
def test_two_process_sft_step_equals_the_single_process_step(tiny_model_dir, tmp_path, trainer):
    import json

    import torch.multiprocessing as mp

    import ddp_worker

    data = tmp_path / "sft.jsonl"
    rows = [{"prompt": f"What is {i} + {i}?", "completion": f"<think> {i} + {i} = {2 * i} </think> <answer> {2 * i} </answer>"}
            for i in range(7)]  # an odd count: the ranks get different numbers of examples
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if trainer.startswith("deepspeed"):
        pytest.importorskip("deepspeed", reason="DeepSpeed is not installed: pip install 'r1gym[deepspeed]'")
    ddp_worker.run_sft(0, 1, _free_port(), str(tiny_model_dir), str(tmp_path), str(data))
    mp.start_processes(ddp_worker.run_sft, args=(2, _free_port(), str(tiny_model_dir), str(tmp_path), str(data), trainer),
                       nprocs=2, join=True, start_method="spawn")
    one, two = torch.load(tmp_path / "sft-world1.pt"), torch.load(tmp_path / f"sft-world2-{trainer}.pt")
    for name, w in one["state"].items():  # Adam's first step divides by |g|: summation order shows at ~5e-6
        torch.testing.assert_close(two["state"][name], w, rtol=1e-4, atol=2e-5, msg=f"{name} differs")
    assert one["metrics"]["loss"] == pytest.approx(two["metrics"]["loss"], rel=1e-5)
    # DeepSpeed sums the squares per partition, then over ranks: its norm differs by ~1.5e-5 relative here
    assert one["metrics"]["grad_norm"] == pytest.approx(two["metrics"]["grad_norm"], rel=5e-5)
    assert one["metrics"]["examples"] == two["metrics"]["examples"] == 14  # 2 epochs of 7 in one step


def test_every_rank_keeps_rank_0s_precision_choice(tmp_path):
    """Each rank times the ``auto`` candidates on its own cores; were each to keep its own choice, the ranks
    would train one model in two precisions. Here rank 1's timings alone would pick bf16, rank 0's fp32."""
    import torch.multiprocessing as mp

    import ddp_worker

    mp.start_processes(ddp_worker.choose_precision, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    assert [(tmp_path / f"choice-{r}.txt").read_text() for r in (0, 1)] == ["null", "null"]
    # rank 1's timings alone, in this process (no process group; nothing of the workers' environment here)
    from r1gym.core import precision

    assert precision.choose({"null": 1.0, "bf16": 0.5}, ("null", "bf16")) == "bf16"


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["ddp", "deepspeed_zero3"])
def test_dapo_dynamic_sampling_runs_under_torchrun(tmp_path, trainer):
    """algo=dapo with 2 processes (SmolLM2 on the demo task, where some groups are flat and some are not): the
    ranks decide every sampling round on global counts, so they stay in step, and each step reports the
    global figures (episodes kept: whole groups, at most prompts_per_step of them)."""
    import json
    import os
    import subprocess
    import sys

    if trainer.startswith("deepspeed"):
        pytest.importorskip("deepspeed", reason="DeepSpeed is not installed: pip install 'r1gym[deepspeed]'")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "r1gym.core.cli", "train", "experiment=demo", "algo=dapo", f"trainer={trainer}", "trainer.threads=1",
           "trainer.max_steps=2", "trainer.save_every=100", "algo.group_size=4", "algo.prompts_per_step=4",
           "rollout.max_new_tokens=24", "eval.at_start=false", "eval.at_end=false", "logger=jsonl_only", f"run_dir={run}"]
    # the demo's precision stays "auto": every rank times it, and all keep rank 0's choice (a collective)
    out = subprocess.run(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1", "DS_ACCELERATOR": "cpu"}, capture_output=True,
                         timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr).decode()[-3000:]
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in steps] == [1, 2]
    for m in steps:
        assert 1 <= m["sampling/rounds"] <= 3
        if "episodes" in m:  # a step that kept groups
            assert m["episodes"] % 4 == 0 and 0 < m["episodes"] <= 16
    assert any("episodes" in m for m in steps), steps  # some group had reward variance


@pytest.mark.parametrize("launcher", ["accelerate", "deepspeed"])
def test_accelerate_launch_and_the_deepspeed_launcher_start_two_ranks(tiny_model_dir, tmp_path, launcher):
    """The other standard launchers set the same environment as torchrun (RANK, WORLD_SIZE, MASTER_ADDR...):
    on this CPU, `accelerate launch --multi_gpu` (its torchrun path; `--cpu` would need mpirun) and
    `deepspeed --num_gpus 2 --module` (which passes --local_rank=N, accepted and ignored by the CLI)."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    bindir = os.path.dirname(sys.executable)
    if launcher == "deepspeed":
        pytest.importorskip("deepspeed", reason="DeepSpeed is not installed: pip install 'r1gym[deepspeed]'")
        cmd = [os.path.join(bindir, "deepspeed"), "--num_gpus", "2", "--master_port", str(_free_port()), "--module",
               "r1gym.core.cli", "train", "trainer=deepspeed_zero2"]
    else:
        cmd = [os.path.join(bindir, "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
               "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
               "-m", "r1gym.core.cli", "train", "trainer=ddp"]
    if not shutil.which(cmd[0]):
        pytest.skip(f"{cmd[0]} is not installed")
    run = tmp_path / "run"
    cmd += ["model=hf", f"model.name_or_path={tiny_model_dir}", "env=arithmetic_fewshot", "algo.group_size=2",
            "algo.prompts_per_step=2", "rollout.max_new_tokens=8", "trainer.max_steps=2", "trainer.threads=1",
            "logger=jsonl_only", "eval.at_start=false", "eval.at_end=false", f"run_dir={run}"]
    out = subprocess.run(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1", "DS_ACCELERATOR": "cpu"}, capture_output=True,
                         timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr).decode()[-3000:]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["processes"] == 2
