"""Rewards, task sources and envs named by config without a plugin (issue 17, item 2): ``"module:function"``,
``"path/to/file.py:function"``, ``fn:`` and Hydra's ``_target_``; each form, each error, and a GRPO run that
trains with a reward from a user's own file."""

from __future__ import annotations

import json
import math
import sys
import textwrap

import gymnasium
import pytest
from omegaconf import OmegaConf

from r1gym.core.config import compose
from r1gym.core.env_factory import env_kwargs, env_spec, make_envs
from r1gym.core.plugins import default_host
from r1gym.core.registry import UnknownNameError
from r1gym.core.rewards import Unscorable
from r1gym.core.targets import locate
from r1gym.envs.base import SingleTurnEnv, Task, config_rewards, resolve_rewards, resolve_source, source_factory

USER_REWARDS = '''
"""A user's reward file: not a package, not installed, not a plugin."""
from r1gym.core.rewards import Unscorable

CALLS = []


def exact(completion, answer=None, bonus=0.0):
    """1 + bonus when the completion is the answer, else 0."""
    return (1.0 + bonus) if completion.strip() == str(answer) else 0.0


def never(completion):
    return None


def refuses(completion):
    raise Unscorable("no checker for this")


def wants_host(completion, host=None):
    CALLS.append(host)
    return 1.0


def lively(completion, scale=1.0):
    """The share of distinct characters (varies within a GRPO group), times ``scale``; every call recorded."""
    value = scale * (len(set(completion)) / len(completion) if completion else 0.0)
    CALLS.append(value)
    return value


class Threshold:
    """A reward built once from its parameters (a _target_ class)."""

    def __init__(self, at):
        self.at = at

    def __call__(self, completion, answer=None):
        return float(len(completion) >= self.at)
'''

USER_SOURCES = '''
from r1gym.envs.base import Task


class Squares:
    def __init__(self, n=3, offset=0):
        self.tasks = [Task(f"sq-{i}", f"What is {i + offset} squared?", {"answer": str((i + offset) ** 2)}) for i in range(n)]

    def __len__(self):
        return len(self.tasks)

    def __getitem__(self, i):
        return self.tasks[i]


def make_squares(n=2):
    return Squares(n=n)


def not_a_source():
    return {"prompt": "a dict is not a task source"}
'''

USER_ENVS = '''
import gymnasium
from r1gym.envs.base import SingleTurnEnv


class SquaresEnv(SingleTurnEnv):
    """An env class of the user's: its defaults live in the class, not in a registration."""

    def __init__(self, rewards=None, **kwargs):
        super().__init__({"name": "SOURCES:make_squares", "n": 2}, rewards or {"format": 1.0}, **kwargs)


class Plain(gymnasium.Env):
    """A gymnasium env that knows nothing of r1gym (takes no host=)."""

    def __init__(self, size=1):
        self.size = size
        self.observation_space = gymnasium.spaces.Discrete(2)
        self.action_space = gymnasium.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 0, {}

    def step(self, action):
        return 0, 0.0, True, False, {}

'''

REGISTERS = '''
import gymnasium

gymnasium.register(id="UserRegistered-v0", entry_point="r1gym.envs.base:SingleTurnEnv", kwargs={"system_prompt": "none"})
'''


@pytest.fixture()
def user_files(tmp_path):
    """A user's reward, source and env files in tmp_path (paths returned as strings)."""
    rewards, sources, envs = tmp_path / "my_rewards.py", tmp_path / "my_sources.py", tmp_path / "my_envs.py"
    rewards.write_text(USER_REWARDS)
    sources.write_text(USER_SOURCES)
    envs.write_text(USER_ENVS.replace("SOURCES", str(sources)))
    (tmp_path / "registers_an_env.py").write_text(REGISTERS)
    yield {"rewards": str(rewards), "sources": str(sources), "envs": str(envs)}
    gymnasium.registry.pop("UserRegistered-v0", None)


@pytest.fixture()
def host():
    return default_host()


# -- locate -----------------------------------------------------------------------------------------------------
def test_locate_reads_module_colon_name_dotted_paths_and_files_once(user_files, tmp_path, monkeypatch):
    import os.path

    assert locate("os.path:join") is os.path.join is locate("os.path.join")
    assert locate("r1gym.core.rewards:Graded.__new__") is locate("r1gym.core.rewards.Graded").__new__
    exact = locate(f"{user_files['rewards']}:exact")
    monkeypatch.chdir(tmp_path)  # a relative path resolves from the working directory, like resolve_path
    assert locate("my_rewards.py:exact") is exact  # the file is executed once per path
    assert locate("./my_rewards.py:exact") is exact
    assert sys.modules[exact.__module__].__file__ == user_files["rewards"]


@pytest.mark.parametrize(("ref", "error", "message"), [
    ("my_rewards.py:exakt", UnknownNameError, r"my_rewards.py' has no reward function 'exakt'; there: .*exact.*Did you mean 'exact'"),
    ("my_rewardz.py:exact", FileNotFoundError, r"no Python file 'my_rewardz.py'.*my_rewards.py.*Did you mean 'my_rewards.py'"),
    ("jsn:loads", ModuleNotFoundError, r"no module named 'jsn'.*Did you mean 'json'"),
    ("json:lods", UnknownNameError, r"'json' has no reward function 'lods'.*Did you mean 'loads'"),
    ("r1gym.plugins.mathh.rewards:math_accuracy", UnknownNameError,
     r"package 'r1gym.plugins' has no module 'mathh'; there: .*math.*Did you mean 'math'"),
    ("r1gym.plugins.math.rewards.math_acuracy", UnknownNameError, r"Did you mean 'math_accuracy'"),
])
def test_a_misspelled_reference_says_what_exists_and_the_closest_name(user_files, tmp_path, monkeypatch, ref, error,
                                                                         message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=message):
        locate(ref, "reward function")


def test_an_import_error_inside_the_users_module_is_left_as_it_is(tmp_path):
    (tmp_path / "broken.py").write_text("import not_installed_anywhere_xyz\n\ndef f(completion):\n    return 1.0\n")
    with pytest.raises(ModuleNotFoundError, match="not_installed_anywhere_xyz") as info:
        locate(f"{tmp_path / 'broken.py'}:f")
    assert info.value.name == "not_installed_anywhere_xyz"
    (tmp_path / "syntax.py").write_text("def f(:\n")
    with pytest.raises(SyntaxError):
        locate(f"{tmp_path / 'syntax.py'}:f")


# -- rewards ---------------------------------------------------------------------------------------------------
def test_every_reward_form_scores_with_its_weight_and_parameters(user_files, host):
    path = user_files["rewards"]
    rewards = resolve_rewards({
        f"{path}:exact": 1.0,                                                    # the key is the reference
        "with_fn": {"fn": f"{path}:exact", "weight": 0.5, "bonus": 1.0},         # fn: + a parameter
        "as_reward": {"reward": f"{path}:exact", "weight": 0.25},                # reward: takes a reference too
        "target": {"_target_": "r1gym.envs.rewards.format_reward", "weight": 0.1, "strict": True},
        "built": {"_target_": f"{path}:Threshold", "at": 3, "weight": 2.0},      # a class: built once with `at`
        "format": 0.1,                                                           # registered names still work
    }, host)
    assert [c.name for c in rewards.components] == ["exact", "with_fn", "as_reward", "target", "built", "format"]
    outcome = rewards.score("42", {"answer": "42"})
    assert outcome.components == {"exact": 1.0, "with_fn": 2.0, "as_reward": 1.0, "target": 0.0, "built": 0.0,
                                  "format": 0.0}
    assert outcome.total == pytest.approx(1.0 + 0.5 * 2.0 + 0.25 * 1.0)
    assert rewards.score("4200", {"answer": "42"}).components["built"] == 1.0


def test_config_rewards_resolves_without_calling_anything(user_files):
    spec, found = config_rewards({"mine": {"fn": f"{user_files['rewards']}:lively", "weight": 3, "scale": 2},
                                  "format": 0.1, "off": None})
    assert spec["format"] == 0.1 and spec["off"] is None
    assert found[spec["mine"]["reward"]].__name__ == "lively"
    assert {k: v for k, v in spec["mine"].items() if k != "reward"} == {"weight": 3, "scale": 2}
    assert locate(f"{user_files['rewards']}:CALLS") == []


def test_config_rewards_keep_the_contract_of_registered_ones(user_files, host):
    path = user_files["rewards"]
    rewards = resolve_rewards({"never": {"fn": f"{path}:never", "weight": 1.0},
                               "refuses": {"fn": f"{path}:refuses", "weight": 0.0},
                               "host_aware": {"fn": f"{path}:wants_host"}}, host)
    outcome = rewards.score("x", {"answer": "1", "host": "a task field, never the host"})
    assert outcome.total is None and outcome.unscorable == {"never": "returned None", "refuses": "no checker for this"}
    assert locate(f"{path}:CALLS") == [host]  # the plugin host, as a registered reward declaring `host` gets it


@pytest.mark.parametrize(("spec", "error", "message"), [
    ({"r": {"fn": "FILE:exact", "bonsu": 1}}, TypeError, r"unknown parameter\(s\) \['bonsu'\]; it accepts \['answer', 'bonus'\]"),
    ({"r": {"fn": "FILE:exact", "_target_": "FILE:exact"}}, ValueError, "names its function more than once"),
    ({"r": {"fn": "FILE:exact", "_partial_": True}}, ValueError, "is a function; its parameters go to every call"),
    ({"r": {"_target_": "FILE:CALLS"}}, TypeError, "is list, not a callable reward"),
    ({"r": {"fn": "FILE:exactt"}}, UnknownNameError, "Did you mean 'exact'"),
    ({"r": {"fn": "math_acuracy"}}, UnknownNameError, r"unknown reward 'math_acuracy'.*Did you mean 'math_accuracy'"),
    ({"r": {"_target_": "FILE:Threshold", "att": 3}}, Exception, "Threshold"),  # Hydra's own error, naming the class
])
def test_reward_config_errors_say_what_is_wrong(user_files, host, spec, error, message):
    spec = json.loads(json.dumps(spec).replace("FILE", user_files["rewards"]))
    with pytest.raises(error, match=message):
        resolve_rewards(spec, host)


# -- task sources ----------------------------------------------------------------------------------------------
def test_sources_from_a_target_a_reference_or_a_registered_name(user_files, host):
    path = user_files["sources"]
    by_target = resolve_source({"_target_": f"{path}:Squares", "n": 4, "offset": 1}, host)
    assert len(by_target) == 4 and by_target[0].fields == {"answer": "1"}
    by_name = resolve_source({"name": f"{path}:make_squares", "n": 3}, host)
    assert [t.id for t in by_name.tasks] == ["sq-0", "sq-1", "sq-2"]
    dotted = resolve_source({"_target_": "r1gym.envs.datasets.JsonlSource", "path": "pkg://r1gym.envs/data/sample_arithmetic.jsonl"}, host)
    assert isinstance(dotted[0], Task) and len(dotted) > 10
    factory, params = source_factory({"name": f"{path}:make_squares", "n": 3}, host)
    assert factory.__name__ == "make_squares" and params == {"n": 3}  # nothing built


@pytest.mark.parametrize(("source", "error", "message"), [
    ({"name": "FILE:make_sqaures"}, UnknownNameError, "Did you mean 'make_squares'"),
    ({"name": "FILE:not_a_source"}, TypeError, "built dict, not a task source"),
    ({"name": "jsnl"}, UnknownNameError, r"unknown task source 'jsnl'.*Did you mean 'jsonl'"),
    ({"name": "jsonl", "_target_": "FILE:Squares"}, ValueError, "'name' or '_target_', got both"),
    ({"path": "x.jsonl"}, TypeError, "a mapping with a 'name' or '_target_' key"),
    ({"name": "FILE:make_squares", "m": 1}, TypeError, "unexpected keyword argument 'm'"),
])
def test_source_config_errors_say_what_is_wrong(user_files, host, source, error, message):
    source = {k: v.replace("FILE", user_files["sources"]) if isinstance(v, str) else v for k, v in source.items()}
    with pytest.raises(error, match=message):
        resolve_source(source, host)


# -- envs ------------------------------------------------------------------------------------------------------
def _env_cfg(env_id, **kwargs):
    return OmegaConf.create({"id": env_id, "kwargs": kwargs, "eval_kwargs": {}})


def test_an_env_class_from_a_users_file_is_made_from_an_on_the_fly_spec(user_files, host):
    cfg = _env_cfg(f"{user_files['envs']}:SquaresEnv", system_prompt="none")
    a, b = make_envs(cfg, 2, host=host)
    assert a is not b and isinstance(a.unwrapped, SingleTurnEnv) and a.unwrapped.host is host
    obs, info = a.reset(seed=0, options={"index": 1})
    assert obs == [{"role": "user", "content": "What is 1 squared?"}] and info["task_id"] == "sq-1"
    assert f"{user_files['envs']}:SquaresEnv" not in gymnasium.registry  # nothing global was registered


def test_a_plain_gymnasium_env_gets_no_host_and_gymnasiums_module_colon_id_works(user_files, host, monkeypatch):
    (plain,) = make_envs(_env_cfg(f"{user_files['envs']}:Plain", size=5), 1, host=host)
    assert plain.unwrapped.size == 5 and "host" not in env_kwargs(_env_cfg(f"{user_files['envs']}:Plain"), host=host)
    monkeypatch.syspath_prepend(str(user_files["envs"]).rsplit("/", 1)[0])
    spec = env_spec("registers_an_env:UserRegistered-v0", host)  # gymnasium's way: import the module, then the id
    assert spec.id == "UserRegistered-v0" and spec.kwargs == {"system_prompt": "none"}


def test_env_id_errors_name_what_exists(user_files, host):
    with pytest.raises(UnknownNameError, match=r"unknown environment 'r1gym/Mathh-v0'.*Did you mean 'r1gym/Math-v0'"):
        env_spec("r1gym/Mathh-v0", host)
    with pytest.raises(UnknownNameError, match=r"has no environment 'SquaresEnvv'.*Did you mean 'SquaresEnv'"):
        env_spec(f"{user_files['envs']}:SquaresEnvv", host)
    with pytest.raises(TypeError, match="an env entry point is a gymnasium.Env class"):
        env_spec("math:pi", host)


# -- a real GRPO run with a reward from a user's file ----------------------------------------------------------
def test_grpo_trains_with_a_reward_from_a_users_file(user_files, tiny_model_dir, tmp_path, monkeypatch):
    """The reward is named by its file's path relative to the working directory (verl's custom_reward_function),
    with a parameter; the run must call it for every sample and log exactly its values."""
    from r1gym.core.grpo import GRPOTrainer
    from r1gym.core.plugins import load_plugins

    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    cfg = compose([f"model.name_or_path={tiny_model_dir}", "env=arithmetic", "algo.prompts_per_step=2",
                   "algo.group_size=4", "algo.micro_batch_size=4", "rollout.max_new_tokens=6", "trainer.max_steps=2",
                   "trainer.save_every=100", "trainer.threads=1", "eval.at_start=false", "eval.at_end=false",
                   "logger=jsonl_only", f"run_dir={run_dir}", "~env.kwargs.rewards",
                   "+env.kwargs.rewards={lively: {fn: 'my_rewards.py:lively', weight: 1.0, scale: 2.0}}"])
    summary = GRPOTrainer(cfg, run_dir, host=load_plugins(autoload=False)).train()
    assert summary["status"] == "finished"
    calls = locate("my_rewards.py:lively").__globals__["CALLS"]
    assert len(calls) == 2 * 2 * 4  # steps x prompts x samples
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2]
    for step, values in zip(steps, (calls[:8], calls[8:])):
        assert step["reward/lively"] == pytest.approx(sum(values) / 8)
        assert step["reward/mean"] == pytest.approx(sum(values) / 8)  # the only component, weight 1
    assert max(calls) <= 2.0 and any(0 < v < 2.0 for v in calls) and not any(math.isnan(v) for v in calls)
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert {round(s["rewards"]["lively"], 6) for s in samples} <= {round(v, 6) for v in calls}


def test_a_source_config_naming_another_source_replaces_the_registered_one(user_files, host):
    """r1gym/Math-v0 is registered with {name: math, path: ..., id_field: id}: a config that names another source
    must not hand that source the math source's parameters, while one that names none merges into them."""
    cfg = OmegaConf.create({"id": "r1gym/Math-v0", "kwargs": {"source": {"name": f"{user_files['sources']}:make_squares"}},
                            "eval_kwargs": {"source": {"n": 1}}})
    assert env_kwargs(cfg)["source"] == {"name": f"{user_files['sources']}:make_squares"}
    assert env_kwargs(cfg, eval_split=True)["source"] == {"name": f"{user_files['sources']}:make_squares", "n": 1}
    (held_out,) = make_envs(cfg, 1, eval_split=True, host=host)
    assert len(held_out.unwrapped.source) == 1
    same = OmegaConf.create({"id": "r1gym/Math-v0", "kwargs": {"source": {"split": "test"}}, "eval_kwargs": {}})
    assert env_kwargs(same)["source"]["id_field"] == "id" and env_kwargs(same)["source"]["split"] == "test"


def test_a_reward_given_by_reference_is_logged_under_its_functions_name(user_files, host, tmp_path, monkeypatch):
    """A key that is a reference (``"my_rewards.py:exact"``, ``"my_rewards:exact"``) is the component ``exact``:
    ``info["rewards"]`` (and so ``reward/exact`` in metrics) carries no path, ``:`` or ``/``, which TensorBoard
    and W&B would read as sections or rewrite. Two keys with one name fail, saying how to name one of them."""
    monkeypatch.syspath_prepend(str(tmp_path))
    for key in (user_files["rewards"] + ":exact", "my_rewards:exact"):
        env = SingleTurnEnv(source={"name": f"{user_files['sources']}:make_squares", "n": 2},
                            rewards={key: 1.0, "format": 0.1}, system_prompt=None, host=host)
        env.reset(options={"index": 1})
        info = env.step("1")[4]
        assert info["rewards"] == {"exact": 1.0, "format": 0.0}, key
    with pytest.raises(ValueError, match=r"rewards 'my_rewards:exact' and '.*my_rewards.py:exact' would both be the "
                                         r"component 'exact' .*e\.g\. exact_2: \{fn: '.*my_rewards.py:exact'\}"):
        config_rewards({"my_rewards:exact": 1.0, user_files["rewards"] + ":exact": 0.5})
    with pytest.raises(ValueError, match=r"rewards 'exact' and 'my_rewards:exact' .*exact_2: \{fn: 'my_rewards:exact'\}"):
        config_rewards({"exact": {"fn": "my_rewards:exact"}, "my_rewards:exact": 1.0})
    spec, _ = config_rewards({"mine": {"fn": "my_rewards:exact"}, "my_rewards:exact": 1.0})  # named apart: both kept
    assert list(spec) == ["mine", "exact"]
