"""The config check (r1gym.core.validate): every shipped config passes; each kind of mistake is reported with
its did-you-mean; all mistakes come in one error; ``r1gym train`` stops on them before any model loads."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from omegaconf import open_dict

from r1gym.core.config import compose
from r1gym.core.plugins import load_plugins
from r1gym.core.validate import CHOICES, ConfigCheckError, check_config, check_configs, choices, collect_problems

CONF = Path(__file__).resolve().parents[1] / "conf"
OPTIONS = [f"{g.name}={f.stem}" for g in sorted(CONF.iterdir()) if g.is_dir() and g.name != "pipeline"
           and not g.name.startswith(("_", ".")) for f in sorted(g.glob("*.yaml"))]
PIPELINE_STAGES = [
    (f"{path.stem}:{st['name']}", [f"stage={st['stage']}", *spec.get("common", []), *st.get("overrides", [])])
    for path in sorted((CONF / "pipeline").glob("*.yaml"))
    for spec in [yaml.safe_load(path.read_text())] for st in spec.get("stages", [])
]


@pytest.fixture(scope="module")
def host():
    return load_plugins()


def problems(host, *overrides: str) -> dict[str, str]:
    return dict(collect_problems(compose(list(overrides), config_dirs=host.config_dirs), host))


def test_the_lists_of_configs_are_found():
    assert {"env=countdown", "env=code", "env=mixture_tiny", "experiment=demo", "stage=rejection_sampling"} <= set(OPTIONS)
    assert len(PIPELINE_STAGES) >= 14  # r1 and r1_tiny, seven stages each


@pytest.mark.parametrize("option", OPTIONS)
def test_every_option_in_conf_passes(host, option):
    assert problems(host, option) == {}


@pytest.mark.parametrize(("name", "overrides"), PIPELINE_STAGES, ids=[n for n, _ in PIPELINE_STAGES])
def test_every_pipeline_stage_passes(host, name, overrides):
    assert problems(host, *overrides) == {}


MISTAKES = [  # (overrides, where the problem is reported, words of the message, the suggestion)
    (["env=arithmetic", "env.kwargs.rewards.arithmetic={weight: 1.0, some_parm: 1}"],
     "env.kwargs.rewards.arithmetic.some_parm", "reward 'arithmetic' takes no parameter 'some_parm'; it takes answer", None),
    (["env=math", "+env.kwargs.rewards.math_accuracy.timeuot=3"],
     "env.kwargs.rewards.math_accuracy.timeuot", "reward 'math_accuracy' takes no parameter 'timeuot'", "timeout"),
    (["+env.kwargs.rewards.formt=0.1"], "env.kwargs.rewards.formt", "unknown reward 'formt'", "format"),
    (["+env.kwargs.rewards.judged={reward: llm_jduge}"], "env.kwargs.rewards.judged.reward", "unknown reward 'llm_jduge'",
     "llm_judge"),
    (["env.kwargs.rewards.format={weight: heavy}"], "env.kwargs.rewards.format.weight", "a reward weight is a number", None),
    (["env.kwargs.source.name=countdwn"], "env.kwargs.source.name", "unknown task source 'countdwn'", "countdown"),
    (["+env.kwargs.source.max_numbr=9"], "env.kwargs.source.max_numbr", "task source 'countdown' takes no parameter",
     "max_number"),
    (["env.id=r1gym/Countdwn-v0"], "env.id", "unknown environment 'r1gym/Countdwn-v0'", "r1gym/Countdown-v0"),
    (["+env.kwargs.sytem_prompt=none"], "env.kwargs.sytem_prompt", "env 'r1gym/Countdown-v0' takes no parameter",
     "system_prompt"),
    (["env=countdown_retry", "+env.kwargs.max_turn=2"], "env.kwargs.max_turn", "env 'r1gym/CountdownRetry-v0' takes no",
     "max_turns"),
    (["env.kwargs.unscorable=drop"], "env.kwargs.unscorable", "unknown unscorable setting 'drop'", None),
    (["env.eval_kwargs.source.split=tset", "+env.eval_kwargs.source.sed=1"], "env.eval_kwargs.source.sed",
     "task source 'countdown' takes no parameter 'sed'", "seed"),
    (["env=mixture", "env.kwargs.envs=[{id: r1gym/Arithmetic-v0, wieght: 1.0}]"], "env.kwargs.envs[0].wieght",
     "unknown mixture member key 'wieght'", "weight"),
    (["env=mixture", "env.kwargs.envs=[{id: r1gym/Arithmetic-v0, kwargs: {rewards: {arithmetc: 1.0}}}]"],
     "env.kwargs.envs[0].kwargs.rewards.arithmetc", "unknown reward 'arithmetc'", "arithmetic"),
    (["env=code", "env.kwargs.rewards.code_tests.sandbox=lcoal"], "env.kwargs.rewards.code_tests.sandbox",
     "unknown sandbox 'lcoal'", "local"),
    (["env=code_exec", "env.kwargs.sandbox=e2 b"], "env.kwargs.sandbox", "unknown sandbox 'e2 b'", "e2b"),
    (["+env.kwargs.rewards.judged={reward: llm_judge, backend: opnai}"], "env.kwargs.rewards.judged.backend",
     "unknown judge backend 'opnai'", "openai"),
    (["stage=rejection_sampling", "+sample.judge={backend: local, templat: helpfulness}"], "sample.judge.templat",
     "reward 'llm_judge' takes no parameter 'templat'", "template"),
    (["stage=rejection_sampling", "sample.accuracy_reward=countdwn"], "sample.accuracy_reward",
     "unknown reward of the env 'countdwn'", "countdown"),
    (["rollout.backend=vlm"], "rollout.backend", "unknown rollout backend 'vlm'", "vllm"),
    (["logger.names=[console,jsonl,tensorbord]"], "logger.names[2]", "unknown logger 'tensorbord'", "tensorboard"),
    (["logger=tensorboard", "+logger.params.tensorboard.logdir=tb"], "logger.params.tensorboard.logdir",
     "logger 'tensorboard' takes no parameter 'logdir'", "log_dir"),
    (["+logger.params.tensorbord.log_dir=tb"], "logger.params.tensorbord", "unknown logger 'tensorbord'", "tensorboard"),
    (["stage.kind=grop"], "stage.kind", "unknown stage kind 'grop'", "grpo"),
    (["algo.advantage=drgrpo"], "algo.advantage", "unknown advantage estimator 'drgrpo'", "dr_grpo"),
    (["algo.loss_aggregation=token_men"], "algo.loss_aggregation", "unknown loss aggregation 'token_men'", "token_mean"),
    (["algo.is_correction=trunc"], "algo.is_correction", "unknown importance correction 'trunc'", "truncate"),
    (["algo.optim.schedule=cosin"], "algo.optim.schedule", "unknown LR schedule 'cosin'", "cosine"),
    (["sft.optim.schedule=lineer"], "sft.optim.schedule", "unknown LR schedule 'lineer'", "linear"),
    (["trainer.matmul=onedn"], "trainer.matmul", "unknown matmul mode 'onedn'", "onednn"),
    (["trainer.autocast=bf61"], "trainer.autocast", "unknown autocast mode 'bf61'", "bf16"),
    (["model.prompt_format=r1zero"], "model.prompt_format", "unknown prompt format 'r1zero'", "r1_zero"),
    (["stage=sft", "sft.loss_on=assistent"], "sft.loss_on", "unknown SFT loss mask 'assistent'", "assistant"),
]


@pytest.mark.parametrize(("overrides", "where", "words", "suggestion"), MISTAKES, ids=[m[1] for m in MISTAKES])
def test_each_kind_of_mistake_is_reported_where_it_is_with_a_suggestion(host, overrides, where, words, suggestion):
    found = problems(host, *overrides)
    assert where in found, f"no problem at {where}; found {found}"
    assert words in found[where]
    if suggestion is not None:
        assert found[where].endswith(f"Did you mean {suggestion!r}?"), found[where]
    assert len(found) == 1, f"one mistake, one problem: {found}"


def test_all_mistakes_come_in_one_error(host):
    cfg = compose(["experiment=demo", "env.kwargs.rewards.arithmetic={weight: 1.0, some_parm: 1}",
                   "+env.kwargs.rewards.formt=0.1", "env.kwargs.source.name=arithmetc", "logger.names=[consle]",
                   "rollout.backend=vlm", "algo.advantage=grp"], config_dirs=host.config_dirs)
    with pytest.raises(ConfigCheckError) as err:
        check_config(cfg, host)
    assert isinstance(err.value, ValueError)
    assert [where for where, _ in err.value.problems] == [
        "algo.advantage", "env.kwargs.source.name", "env.kwargs.rewards.arithmetic.some_parm", "env.kwargs.rewards.formt",
        "rollout.backend", "logger.names[0]"]
    text = str(err.value)
    assert text.startswith("the config has 6 problem(s), found before loading anything:")
    for suggestion in ("'grpo'", "'arithmetic'", "'format'", "'vllm'", "'console'"):
        assert f"Did you mean {suggestion}?" in text


def test_a_pipeline_is_checked_stage_by_stage_in_one_error(host):
    good = compose(["stage=sft"], config_dirs=host.config_dirs)
    bad = compose(["stage=r1_zero", "rollout.backend=hff"], config_dirs=host.config_dirs)
    with pytest.raises(ConfigCheckError) as err:
        check_configs([("sft", good), ("r1_zero", bad), ("again", bad)], host)
    assert [where for where, _ in err.value.problems] == ["r1_zero: rollout.backend", "again: rollout.backend"]
    check_configs([("sft", good)], host)  # nothing wrong: returns


def test_rewards_and_sources_named_by_reference_are_checked_without_calling_them(host, tmp_path):
    user = tmp_path / "my_rewards.py"
    user.write_text(textwrap.dedent("""
        CALLS = []

        def shouting(completion, *, answer=None, loudness=1.0):
            CALLS.append(completion)
            return float(completion.isupper()) * loudness

        class Scaled:
            def __init__(self, factor):
                CALLS.append(factor)
                self.factor = factor

            def __call__(self, completion):
                return self.factor
    """))
    ok = compose([f"+env.kwargs.rewards.shout={{fn: '{user}:shouting', loudness: 2.0}}",
                  f"+env.kwargs.rewards.scaled={{_target_: '{user}:Scaled', factor: 0.5}}"],
                 config_dirs=host.config_dirs)
    with open_dict(ok):
        ok.env.kwargs.rewards[f"{user}:shouting"] = 0.1  # the key itself is the reference
    assert collect_problems(ok, host) == []
    assert sys.modules[next(m for m in sys.modules if m.startswith("r1gym_user_code.my_rewards"))].CALLS == []

    bad = compose([f"+env.kwargs.rewards.shout={{fn: '{user}:shouting', loudnes: 2.0}}",
                   f"+env.kwargs.rewards.scaled={{_target_: '{user}:Scaled', factr: 0.5}}",
                   f"+env.kwargs.rewards.gone={{fn: '{user}:shoutin'}}",
                   "env.kwargs.source.name='r1gym.plugins.countdown.data:CountdownSource'", "+env.kwargs.source.sed=3"],
                  config_dirs=host.config_dirs)
    found = dict(collect_problems(bad, host))
    assert found["env.kwargs.rewards.shout.loudnes"].endswith("Did you mean 'loudness'?")
    assert found["env.kwargs.rewards.scaled.factr"].endswith("Did you mean 'factor'?")
    assert "'shoutin'" in found["env.kwargs.rewards.gone.fn"] and "Did you mean 'shouting'?" in found["env.kwargs.rewards.gone.fn"]
    assert found["env.kwargs.source.sed"].endswith("Did you mean 'seed'?")


def test_the_tables_read_from_source_are_the_tables_the_code_uses():
    """choices() reads the variant tables without importing torch; they must be the imported tables, and for the
    tables written inline in a pick() call, exactly the names the function accepts."""
    from types import SimpleNamespace

    import torch

    from r1gym.core import advantages, losses, onednn, prompts, runtime, sft, stages
    from r1gym.core.registry import UnknownNameError

    imported = {
        "stage.kind": set(stages.RUNNERS), "algo.advantage": set(advantages.ADVANTAGE_ESTIMATORS),
        "algo.loss_aggregation": set(losses.LOSS_AGGREGATIONS), "algo.is_correction": {"auto", *losses.IS_MODES},
        "algo.is_level": set(losses.IS_LEVELS), "trainer.matmul": set(onednn.MODES),
        "model.prompt_format": set(prompts.PROMPT_FORMATS), "sft.loss_on": set(sft.MASKS),
    }
    calls = {  # the inline tables: every listed name works, a name not listed fails
        "algo.optim.schedule": lambda name: runtime.build_scheduler(torch.optim.SGD([torch.zeros(1)], lr=1.0), name, 0, 4),
        "trainer.autocast": lambda name: runtime.autocast(SimpleNamespace(autocast=name), "cpu"),
    }
    calls["sft.optim.schedule"] = calls["algo.optim.schedule"]
    assert set(imported) | set(calls) == set(CHOICES)
    for key, names in imported.items():
        assert set(choices(key)) == names, key
    for key, call in calls.items():
        assert choices(key), key
        for name in choices(key):
            call(name)
        with pytest.raises(UnknownNameError):
            call("no_such_" + choices(key)[0])


def test_the_check_imports_no_torch_and_is_quick():
    """The check runs before any model loads, also from `r1gym config --check`: no torch, a fraction of a second."""
    import subprocess

    code = textwrap.dedent("""
        import sys, time
        from r1gym.core.config import compose
        from r1gym.core.plugins import load_plugins
        from r1gym.core.validate import check_config
        host = load_plugins()
        cfgs = [compose(o, config_dirs=host.config_dirs) for o in (["experiment=demo"], ["env=code"], ["env=mixture_tiny"])]
        t = time.perf_counter()
        for cfg in cfgs:
            check_config(cfg, host)
        print(time.perf_counter() - t, "torch" in sys.modules, "transformers" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    seconds, torch_loaded, transformers_loaded = out.split()
    assert (torch_loaded, transformers_loaded) == ("False", "False")
    assert float(seconds) < 2.0


def test_r1gym_train_stops_on_a_misspelled_reward_parameter_before_any_model_loads(host, tmp_path, capsys, monkeypatch):
    """Through the real command line: exit code 2 with the check's message. The model path does not exist, so a
    run that got as far as loading the model would fail with a different message (the second call shows it)."""
    from r1gym.core import cli, models

    loads = []
    real_resolve = models.resolve_model_path
    monkeypatch.setattr(models, "resolve_model_path", lambda name: loads.append(name) or real_resolve(name))
    args = ["train", "experiment=demo", "model.name_or_path=no-such-model", "trainer.matmul=torch",
            "logger=jsonl_only", "eval.at_start=false"]
    rc = cli.main([*args, f"run_dir={tmp_path / 'bad'}", "env.kwargs.rewards.arithmetic={weight: 1.0, some_parm: 1}"],
                  host=host)
    err = capsys.readouterr().err
    assert rc == 2
    assert "reward 'arithmetic' takes no parameter 'some_parm'" in err
    assert loads == []  # nothing reached the model loader
    rc = cli.main([*args, f"run_dir={tmp_path / 'good'}"], host=host)  # the same run without the mistake
    err = capsys.readouterr().err
    assert rc == 2 and loads == ["no-such-model"] and "unknown model 'no-such-model'" in err.replace("\n", " ")


def test_parameters_of_a_logger_that_does_not_run_are_a_warning_not_an_error(host, caplog):
    """A preset may carry parameters for a logger the user switched off (logger=wandb logger.names=[jsonl]):
    the run ignores them, so the check says so and lets it run."""
    with caplog.at_level("WARNING", logger="r1gym.core.validate"):
        assert problems(host, "logger=tensorboard", "logger.names=[jsonl]") == {}
    assert "logger.params.tensorboard: parameters for logger 'tensorboard', which logger.names (jsonl) does not run" \
        in caplog.text


def test_an_env_class_of_ones_own_is_checked_by_its_signature_only(host, tmp_path):
    """An env named by reference that is not an r1gym env: its kwargs are checked against its __init__, and its
    own `rewards` (a list here) is not read as an r1gym reward spec."""
    user = tmp_path / "my_envs.py"
    user.write_text(textwrap.dedent("""
        import gymnasium as gym

        class Bandit(gym.Env):
            def __init__(self, rewards=(0.0, 1.0), arms=2, render_mode=None):
                self.rewards, self.arms = list(rewards), arms
    """))
    cfg = compose([f"env.id='{user}:Bandit'"], config_dirs=host.config_dirs)
    cfg.env.kwargs = {"rewards": [0.5, 1.0]}
    found = dict(collect_problems(cfg, host))  # the held-out env still gets countdown's {source: {split: test}}
    assert list(found) == ["env.eval_kwargs.source"] and "takes no parameter 'source'" in found["env.eval_kwargs.source"]
    cfg.env.eval_kwargs = {}
    assert collect_problems(cfg, host) == []
    cfg.env.kwargs = {"rewards": [0.5, 1.0], "amrs": 3}
    found = dict(collect_problems(cfg, host))
    assert list(found) == ["env.kwargs.amrs"] and found["env.kwargs.amrs"].endswith("Did you mean 'arms'?")


def test_reward_component_names_that_clash_are_found_before_anything_loads(host):
    """Two rewards logged under one component name, or a reward named like the weighted reward's own metrics
    (reward/mean, reward/std), would overwrite each other's numbers: the check reports both, at the spec."""
    found = problems(host, "env=arithmetic", "+env.kwargs.rewards.mean={reward: format, weight: 0.1}")
    assert "reward 'mean' would be the component 'mean', whose metric reward/mean" in found["env.kwargs.rewards"]
    cfg = compose(["env=arithmetic", "+env.kwargs.rewards.isabs={fn: 'os.path:isabs'}"], config_dirs=host.config_dirs)
    with open_dict(cfg):  # a key with ':' is written in YAML (the command line has no quoting for it)
        cfg.env.kwargs.rewards["os.path:isabs"] = 0.5
    found = dict(collect_problems(cfg, host))
    assert "rewards 'isabs' and 'os.path:isabs' would both be the component 'isabs'" in found["env.kwargs.rewards"]
