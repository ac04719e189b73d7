"""Every config in conf/ composes, the schema catches typos, and every env config builds its envs.

The option lists are read from the folder, so a new YAML file is tested without touching this file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from r1gym.core.config import compose
from r1gym.core.env_factory import make_envs

CONF = Path(__file__).resolve().parents[1] / "conf"
# conf/pipeline is the group of `r1gym pipeline`'s primary config (conf/pipeline_app.yaml), not of the run
# config: tests/test_pipeline.py composes every option of it
GROUPS = sorted(p.name for p in CONF.iterdir()
                if p.is_dir() and not p.name.startswith(("_", ".")) and p.name != "pipeline")
OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((CONF / g).glob("*.yaml"))]
ENV_OPTIONS = [o for g, o in OPTIONS if g == "env"]
# every config that ends in an env node: the env options and the experiments (which override env kwargs)
ENV_CASES = [f"{g}={o}" for g, o in OPTIONS if g in ("env", "experiment")]


def _subset_mismatches(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Keys of ``expected`` (an option file) whose value differs in ``actual`` (the composed node)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected a mapping, got {actual!r}"]
        out = []
        for k, v in expected.items():
            if k == "defaults":
                continue
            if k not in actual:
                out.append(f"{path}.{k}: missing")
            else:
                out += _subset_mismatches(v, actual[k], f"{path}.{k}")
        return out
    return [] if expected == actual else [f"{path}: {expected!r} in the file, {actual!r} composed"]


def test_the_tree_is_found():
    assert {"model", "env", "algo", "rollout", "trainer", "logger", "stage"} <= set(GROUPS)
    assert {"countdown", "arithmetic", "jsonl"} <= set(ENV_OPTIONS)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes(group, option):
    cfg = compose([f"{group}={option}"])
    if group == "experiment":  # a `# @package _global_` overlay: it must at least compose to a full config
        assert cfg.env.id and cfg.algo.group_size >= 1
        return
    path = CONF / group / f"{option}.yaml"
    from_file = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    is_global = "# @package _global_" in path.read_text()  # e.g. stage=eval also sets eval.*
    composed = OmegaConf.to_container(cfg if is_global else cfg[group], resolve=False)
    assert not _subset_mismatches(from_file or {}, composed), f"{group}={option} did not end up in cfg.{group}"


def test_default_composition():
    cfg = compose()
    assert cfg.model.name_or_path == "smollm2-135m"
    assert cfg.env.id == "r1gym/Countdown-v0"
    assert OmegaConf.get_type(cfg.algo).__name__ == "AlgoConfig"  # the schema is in force


def test_misspelled_key_fails_at_compose_time():
    with pytest.raises(Exception, match=r"gropu_size") as err:
        compose(["algo.gropu_size=8"])
    assert type(err.value).__module__.split(".")[0] in {"hydra", "omegaconf"}, type(err.value)


def test_misspelled_group_key_in_an_option_fails(tmp_path):
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "typo.yaml").write_text("id: r1gym/Countdown-v0\nkwarg: {}\n")
    with pytest.raises(Exception, match=r"kwarg"):
        compose(["env=typo"], config_dirs=[tmp_path.as_uri()])


def test_wrong_type_fails():
    with pytest.raises(Exception, match=r"group_size") as err:
        compose(["algo.group_size=abc"])
    assert "abc" in str(err.value)
    assert compose(["algo.group_size=16"]).algo.group_size == 16  # the right type goes through


@pytest.mark.parametrize("override", ENV_CASES)
def test_env_config_builds_train_and_eval_envs(override):
    cfg = compose([override])
    (train,) = make_envs(cfg.env, 1)
    (held_out,) = make_envs(cfg.env, 1, eval_split=True)
    for env in (train, held_out):
        assert env.spec.id == cfg.env.id
        obs, info = env.reset(seed=0)
        assert obs[-1]["role"] == "user" and obs[-1]["content"]
        for _ in range(100):  # multi-turn envs answer a wrong completion and go on
            _, reward, terminated, truncated, step_info = env.step("<think> ? </think> <answer> 0 </answer>")
            if terminated or truncated:
                break
        assert terminated or truncated, "the episode never ended"
        if "envs" in cfg.env.kwargs:  # a mixture: the rewards of the member that ran
            member = next(m for m in cfg.env.kwargs.envs if m.id.split("/")[-1] == step_info["member"])
            expected = set((member.kwargs or {}).get("rewards") or env.unwrapped.reward_set and
                           [c.name for c in env.unwrapped.reward_set.components])
        else:
            expected = set(cfg.env.kwargs.rewards)
        assert set(step_info["rewards"]) == expected  # the configured rewards were used
    if "split" in (cfg.env.eval_kwargs.get("source") or {}):
        assert held_out.unwrapped.source.split != train.unwrapped.source.split


def test_two_envs_are_independent():
    cfg = compose(["env=countdown"])
    a, b = make_envs(cfg.env, 2)
    assert a is not b and a.unwrapped.source is not b.unwrapped.source
    a.reset(seed=0, options={"index": 0})
    b.reset(seed=0, options={"index": 1})
    assert a.unwrapped.task.id != b.unwrapped.task.id


def test_jsonl_env_reads_the_shipped_sample():
    sample = Path(__file__).resolve().parents[1] / "envs" / "data" / "sample_arithmetic.jsonl"
    records = [json.loads(line) for line in sample.read_text().splitlines() if line.strip()]
    cfg = compose(["env=jsonl"])
    (env,) = make_envs(cfg.env, 1)
    source = env.unwrapped.source
    assert len(source) == len(records) > 0
    assert source[0].prompt == records[0]["prompt"]
    assert source[0].fields["answer"] == records[0]["answer"]
    obs, info = env.reset(options={"index": 0})
    assert obs[-1]["content"] == records[0]["prompt"]
    assert info["task_id"] == records[0]["id"] and "answer" not in info and records[0]["answer"] not in info.values()
    _, reward, *_ = env.step(f"<think> ok </think> <answer> {records[0]['answer']} </answer>")
    assert reward == pytest.approx(1.1)  # arithmetic 1.0 + format 0.1


def test_env_kwargs_override_one_nested_key():
    # an existing key is overridden as is; a new one needs Hydra's "+" (the config is in struct mode)
    cfg = compose(["env=arithmetic", "env.kwargs.source.seed=5", "+env.kwargs.source.max_value=3"])
    (env,) = make_envs(cfg.env, 1)
    src = env.unwrapped.source
    assert (src.seed, src.max_value, src.split) == (5, 3, "train")  # the other keys are kept
    with pytest.raises(Exception, match=r"\+env.kwargs.source.max_value=3"):
        compose(["env=arithmetic", "env.kwargs.source.max_value=3"])


def test_model_hf_needs_a_path():
    cfg = compose(["model=hf"])
    assert OmegaConf.is_missing(cfg.model, "name_or_path"), "model=hf silently kept another model's path"
    assert compose(["model=hf", "model.name_or_path=/models/x"]).model.name_or_path == "/models/x"
