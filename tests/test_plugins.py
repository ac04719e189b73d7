"""The plugin host (core/plugins.py) against small plugins built in the test.

Every hook declared in core/hookspecs.py must have a probe in :data:`PROBES` (a new hook without one fails
``test_every_hook_has_a_probe``) and a docstring saying when it is called.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import sys
import textwrap
import types
from collections.abc import Callable
from typing import Any

import gymnasium
import pytest

from r1gym.core import hookspecs
from r1gym.core import plugins as plugins_mod
from r1gym.core.hookspecs import hookimpl
from r1gym.core.plugins import PluginHost, default_host, load_plugins
from r1gym.core.registry import UnknownNameError

HOOK_NAMES = sorted(
    name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, f"{hookspecs.PROJECT}_spec")
)
PROBE_ENV = "r1gymtest/Probe-v0"
FIRST_ENV = "r1gymtest/First-v0"
TEMPLATES = "r1gym.plugins.templates"  # a small real built-in: rewards format, tag_count


def make_plugin(name: str = "probe", **hooks: Callable[..., Any]) -> types.ModuleType:
    """A plugin module whose hook implementations are the given functions (keyword = hook name)."""
    mod = types.ModuleType(name)
    for hook_name, fn in hooks.items():
        fn.__name__ = hook_name
        setattr(mod, hook_name, hookimpl(fn))
    return mod


def load(*extra: tuple[str, object], builtins: tuple[str, ...] = (TEMPLATES,)) -> PluginHost:
    return load_plugins(builtins=builtins, autoload=False, extra=list(extra))


@pytest.fixture(autouse=True)
def _forget_probe_env():
    yield
    for env_id in (PROBE_ENV, FIRST_ENV):
        gymnasium.registry.pop(env_id, None)


def reward_fn(completion: str) -> float:
    return float(len(completion))


def factory(**params: Any) -> dict:
    return params


# hook name -> (what the probe plugin calls register with, a check of the host afterwards)
def _check_envs(host: PluginHost) -> None:
    entry = host.envs.entries[PROBE_ENV]
    assert (entry.plugin, entry.description) == ("probe", "a probe env")
    assert entry.obj.kwargs == {"source": {"name": "arithmetic"}, "rewards": {"format": 1.0}}
    spec = gymnasium.spec(PROBE_ENV)  # it landed in gymnasium's own registry
    assert spec.entry_point == "r1gym.envs.base:SingleTurnEnv" and spec.kwargs == entry.obj.kwargs
    env = gymnasium.make(PROBE_ENV)
    obs, _ = env.reset(seed=0)
    assert obs[-1]["role"] == "user"


def _check_named(attr: str, kind: str, obj: object) -> Callable[[PluginHost], None]:
    def check(host: PluginHost) -> None:
        registry = getattr(host, attr)
        assert registry.get("probe_thing") is obj
        assert registry.entries["probe_thing"].plugin == "probe"
        assert registry.entries["probe_thing"].description == "a probe"
        assert host.plugins["probe"].contributes[kind] == ["probe_thing"]

    return check


def probe_command(args: Any, host: PluginHost) -> int:
    return 40 + args.n if "format" in host.rewards else 0  # the host it was given, with the built-in in it


def probe_arguments(parser: Any) -> None:
    parser.add_argument("--n", type=int, default=1)


def _check_cli_commands(host: PluginHost) -> None:
    from r1gym.core.cli import main

    entry = host.cli_commands.entries["probe thing"]
    assert (entry.plugin, entry.obj.run, entry.obj.arguments, entry.description) == (
        "probe", probe_command, probe_arguments, "a probe")
    assert host.plugins["probe"].contributes == {"commands": ["probe thing"]}
    assert main(["probe", "thing", "--n", "2"], host=host) == 42  # the command line reaches it, with this host


def _check_config_dirs(host: PluginHost) -> None:
    from r1gym.core.config import compose

    (url,) = host.config_dirs
    assert host.plugins["probe"].contributes == {"config dirs": [url]}
    cfg = compose(["env=probe_env"], config_dirs=host.config_dirs)  # the plugin's option is selectable
    assert cfg.env.id == PROBE_ENV


PROBES: dict[str, tuple[Callable[..., None], Callable[[PluginHost], None]]] = {
    "r1gym_register_envs": (
        lambda register, **_: register(
            PROBE_ENV, "r1gym.envs.base:SingleTurnEnv",
            kwargs={"source": {"name": "arithmetic"}, "rewards": {"format": 1.0}}, description="a probe env",
        ),
        _check_envs,
    ),
    "r1gym_register_rewards": (
        lambda register, **_: register("probe_thing", reward_fn, description="a probe"),
        _check_named("rewards", "rewards", reward_fn),
    ),
    "r1gym_register_task_sources": (
        lambda register, **_: register("probe_thing", factory, description="a probe"),
        _check_named("task_sources", "task sources", factory),
    ),
    "r1gym_register_rollout_backends": (
        lambda register, **_: register("probe_thing", factory, description="a probe"),
        _check_named("rollout_backends", "rollout backends", factory),
    ),
    "r1gym_register_loggers": (
        lambda register, **_: register("probe_thing", factory, description="a probe"),
        _check_named("loggers", "loggers", factory),
    ),
    "r1gym_register_sandboxes": (
        lambda register, **_: register("probe_thing", factory, description="a probe"),
        _check_named("sandboxes", "sandboxes", factory),
    ),
    "r1gym_register_judges": (
        lambda register, **_: register("probe_thing", factory, description="a probe"),
        _check_named("judges", "judge backends", factory),
    ),
    "r1gym_register_cli_commands": (
        lambda register, **_: register("probe thing", probe_command, arguments=probe_arguments, description="a probe"),
        _check_cli_commands,
    ),
    "r1gym_register_config_dirs": (
        lambda register, conf_dir, **_: register(conf_dir.as_uri()),
        _check_config_dirs,
    ),
}


def test_core_and_envs_import_no_plugin():
    """The direction of imports (DESIGN.md): core and envs never import a plugin by name, not even lazily;
    every contract a hook names is in core (r1gym.core.contracts, ...), so a plugin needs only core."""
    import ast
    from pathlib import Path

    root = Path(hookspecs.__file__).resolve().parents[1]
    offenders = []
    for folder in ("core", "envs"):
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                offenders += [f"{folder}/{path.name}:{node.lineno} {n}" for n in names if n.startswith("r1gym.plugins")]
    assert offenders == []


def test_hook_names_found():
    assert "r1gym_register_rewards" in HOOK_NAMES and len(HOOK_NAMES) >= 6
    pm = load(builtins=()).pm
    assert sorted(h for h in vars(pm.hook) if h.startswith("r1gym_")) == HOOK_NAMES


def test_every_hook_has_a_probe():
    assert sorted(PROBES) == HOOK_NAMES, "add a probe for each new hook (and drop probes of removed ones)"


@pytest.mark.parametrize("hook_name", HOOK_NAMES)
def test_hook_contributions_reach_the_host(hook_name, tmp_path):
    if hook_name not in PROBES:
        pytest.fail(f"no probe for hook {hook_name}: add one to PROBES")
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "probe_env.yaml").write_text(f"id: {PROBE_ENV}\nkwargs: {{}}\n")
    call, check = PROBES[hook_name]
    host = load(("probe", make_plugin(**{hook_name: lambda register: call(register, conf_dir=tmp_path)})))
    assert host.failed == {}
    check(host)
    assert "format" in host.rewards  # the built-in loaded next to it


@pytest.mark.parametrize("hook_name", HOOK_NAMES)
def test_hookspec_is_documented(hook_name):
    doc = inspect.getdoc(getattr(hookspecs, hook_name)) or ""
    assert "Called" in doc, f"{hook_name}: say when it is called"
    assert "register(" in doc, f"{hook_name}: show how register is called"
    assert "versionadded" in doc, f"{hook_name}: say since which version"
    assert "Return value" in doc or "Returns" in doc, f"{hook_name}: say what it returns (or that it is ignored)"


def test_implementation_may_take_fewer_arguments():
    calls = []
    host = load(("lazy", make_plugin("lazy", r1gym_register_rewards=lambda: calls.append("called"))))
    assert host.failed == {} and calls == ["called"]


def test_plugin_as_object_with_methods():
    class Shouting:
        @hookimpl
        def r1gym_register_rewards(self, register):
            register("shouting", self.score, description="all caps")

        def score(self, completion: str) -> float:
            return float(completion.isupper())

    host = load(("shouting", Shouting()))
    assert host.rewards.get("shouting")("HEY") == 1.0
    assert host.plugins["shouting"].contributes == {"rewards": ["shouting"]}


def test_missing_module_is_reported_and_others_load():
    host = load(builtins=(TEMPLATES, "r1gym_tests_no_such_plugin_module"))
    assert set(host.failed) == {"r1gym_tests_no_such_plugin_module"}
    assert "ModuleNotFoundError" in host.failed["r1gym_tests_no_such_plugin_module"]
    assert "r1gym_tests_no_such_plugin_module" in host.failed["r1gym_tests_no_such_plugin_module"]
    assert {"format", "tag_count"} <= set(host.rewards)
    assert host.plugins["templates"].error is None


def test_module_raising_at_import_is_reported_and_others_load(tmp_path, monkeypatch):
    (tmp_path / "r1gym_tests_boom.py").write_text("raise RuntimeError('boom at import time')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    host = load(("after", make_plugin("after", r1gym_register_rewards=lambda register: register("after", reward_fn))),
                builtins=("r1gym_tests_boom", TEMPLATES))
    assert host.failed == {"r1gym_tests_boom": "RuntimeError: boom at import time"}
    assert {"format", "tag_count", "after"} <= set(host.rewards)  # plugins before and after it loaded
    sys.modules.pop("r1gym_tests_boom", None)


def test_misspelled_hook_fails_the_plugin():
    bad = make_plugin("typo", r1gym_register_reward=lambda register: register("typo_reward", reward_fn))
    host = load(("typo", bad))
    reason = host.failed["typo"]
    assert "r1gym_register_reward" in reason and "unknown hook" in reason
    assert all(h in reason for h in HOOK_NAMES), "the message lists the known hooks"
    assert "Did you mean 'r1gym_register_rewards'" in reason
    assert "typo_reward" not in host.rewards
    assert "typo" not in {host.pm.get_name(p) for p in host.pm.get_plugins()}


@pytest.mark.parametrize("hook_name", HOOK_NAMES)
def test_register_called_wrongly_fails_the_plugin_and_shows_the_right_call(hook_name):
    """Every ``register`` is checked against its type in hookspecs (an unknown keyword is never accepted)."""
    host = load(("wrong", make_plugin("wrong", **{hook_name: lambda register: register("x", reward_fn, colour="red")})))
    reason = host.failed["wrong"]
    assert reason.startswith(f"TypeError: {hook_name}: ") and "call it as register(" in reason
    assert "colour" in reason or "too many positional arguments" in reason  # register(path) takes one
    assert host.plugins["wrong"].contributes == {}


def test_register_callback_types_are_declared_for_every_hook():
    for hook_name in HOOK_NAMES:
        annotation = getattr(hookspecs, hook_name).__annotations__["register"]
        protocol = getattr(hookspecs, annotation)
        assert protocol.__doc__ == f"The ``register`` of :func:`{hook_name}`.", hook_name


def test_an_env_made_with_a_host_takes_its_source_and_rewards_from_that_host():
    """The host is passed, not looked up: the test's own host has a task source the process-wide one lacks."""
    import copy

    from r1gym.envs import make
    from r1gym.envs.base import Task

    class OneTask:
        def __len__(self) -> int:
            return 1

        def __getitem__(self, index: int) -> Task:
            return Task("only", "What is 2 + 2?", {"answer": "4"})

    def plugin_hooks(register):
        register("probe_source", OneTask, description="one task")

    host = load(("probe", make_plugin(r1gym_register_task_sources=plugin_hooks)),
                builtins=(TEMPLATES, "r1gym.plugins.arithmetic"))
    env = make("r1gym/Arithmetic-v0", host=host, source={"name": "probe_source"}, rewards={"format": 1.0})
    obs, info = env.reset(seed=0)
    assert info["task_id"] == "only" and env.unwrapped.host is host
    assert env.spec.kwargs["host"] is host and copy.deepcopy(host) is host  # shared, never copied
    with pytest.raises(UnknownNameError, match="probe_source"):
        make("r1gym/Arithmetic-v0", source={"name": "probe_source"})  # the process-wide host has no such source


def test_hook_raising_halfway_contributes_nothing():
    def rewards(register):
        register("half_a", reward_fn)
        raise RuntimeError("halfway through")

    def envs(register):
        register(PROBE_ENV, "r1gym.envs.base:SingleTurnEnv", kwargs={})

    host = load(("half", make_plugin("half", r1gym_register_rewards=rewards, r1gym_register_envs=envs)))
    assert host.failed == {"half": "RuntimeError: halfway through"}
    assert "half_a" not in host.rewards
    assert PROBE_ENV not in host.envs and PROBE_ENV not in gymnasium.registry
    assert host.plugins["half"].contributes == {}
    assert "half" not in {host.pm.get_name(p) for p in host.pm.get_plugins()}


def test_unknown_name_lists_known_closest_and_failed_reason():
    def rewards(register):
        register("half_a", reward_fn)
        raise RuntimeError("halfway through")

    host = load(("half", make_plugin("half", r1gym_register_rewards=rewards)))
    with pytest.raises(UnknownNameError) as err:
        host.rewards.get("half_a")
    msg = str(err.value)
    assert "unknown reward 'half_a'" in msg
    assert "Known rewards: format, tag_count." in msg
    assert "plugin 'half' failed to load" in msg and "RuntimeError: halfway through" in msg
    with pytest.raises(UnknownNameError, match=r"Did you mean 'format'\?") as err:
        host.rewards.get("formt")
    assert "halfway through" in str(err.value)
    assert isinstance(err.value, KeyError)  # callers that catch KeyError keep working


def test_duplicate_names_from_two_plugins():
    first = make_plugin("first", r1gym_register_rewards=lambda register: register("shared", reward_fn))

    def second_rewards(register):
        register("only_second", reward_fn)
        register("shared", factory)

    host = load(("first", first), ("second", make_plugin("second", r1gym_register_rewards=second_rewards)))
    reason = host.failed["second"]
    assert "'shared' is registered twice" in reason and "'first'" in reason and "'second'" in reason
    assert host.rewards.get("shared") is reward_fn  # the first one keeps its name
    assert "only_second" not in host.rewards, "a plugin that failed must contribute nothing"
    assert "first" not in host.failed


def test_duplicate_env_ids_from_two_plugins():
    def first_envs(register):
        register(FIRST_ENV, "r1gym.envs.base:SingleTurnEnv", kwargs={"source": {"name": "arithmetic"}})

    def second_envs(register):
        register(PROBE_ENV, "r1gym.envs.base:SingleTurnEnv", kwargs={})  # fine on its own ...
        register(FIRST_ENV, "r1gym.plugins.countdown.envs:CountdownRetryEnv", kwargs={})  # ... but this one is taken

    host = load(("a", make_plugin("a", r1gym_register_envs=first_envs)),
                ("b", make_plugin("b", r1gym_register_envs=second_envs)))
    assert f"environment {FIRST_ENV!r} is registered twice" in host.failed["b"]
    assert gymnasium.spec(FIRST_ENV).entry_point == "r1gym.envs.base:SingleTurnEnv"
    assert set(host.envs) == {FIRST_ENV}
    assert PROBE_ENV not in gymnasium.registry, "the failed plugin's first env stayed in gymnasium's registry"


def test_plugin_name_clash_keeps_the_first():
    clash = make_plugin("templates", r1gym_register_rewards=lambda register: register("clash_reward", reward_fn))
    host = load(("templates", clash))
    info = host.plugins["templates"]
    assert info.error is None and info.source == "builtin" and info.contributes == {"rewards": ["format", "tag_count"]}
    (failed_key,) = host.failed
    assert "templates" in failed_key and "already" in host.failed[failed_key]
    assert "clash_reward" not in host.rewards
    host.require("templates")  # the built-in is loaded and stays usable


def test_bad_env_entry_point_fails_the_plugin():
    host = load(("bad_env", make_plugin("bad_env", r1gym_register_envs=lambda register: register(PROBE_ENV, "no_colon"))))
    assert "package.module:ClassName" in host.failed["bad_env"]
    assert PROBE_ENV not in gymnasium.registry


def test_require():
    def boom(register):
        raise ValueError("needs a GPU")

    host = load(("gpu_thing", make_plugin("gpu_thing", r1gym_register_rollout_backends=boom)))
    host.require("templates")
    with pytest.raises(RuntimeError, match=r"plugin 'gpu_thing' is needed but failed to load: ValueError: needs a GPU"):
        host.require("gpu_thing")
    with pytest.raises(UnknownNameError, match=r"Did you mean 'templates'\?"):
        host.require("templatse")


class _FakeEntryPoint:
    def __init__(self, name: str, module: str):
        self.name, self.module, self.dist = name, module, types.SimpleNamespace(name="fake-dist", version="9.9")

    def load(self) -> object:
        return __import__(self.module)


@pytest.mark.parametrize(("env_value", "loaded"), [(None, True), ("1", False), ("true", False), ("0", True)])
def test_entry_points_and_autoload_switch(monkeypatch, env_value, loaded):
    mod = make_plugin("r1gym_tests_ep_plugin", r1gym_register_rewards=lambda register: register("from_ep", reward_fn))
    monkeypatch.setitem(sys.modules, "r1gym_tests_ep_plugin", mod)

    def entry_points(group: str):
        return [_FakeEntryPoint("ep", "r1gym_tests_ep_plugin")] if group == plugins_mod.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    if env_value is None:
        monkeypatch.delenv(plugins_mod.DISABLE_AUTOLOAD_ENV, raising=False)
    else:
        monkeypatch.setenv(plugins_mod.DISABLE_AUTOLOAD_ENV, env_value)
    host = load_plugins(builtins=(TEMPLATES,))
    assert ("from_ep" in host.rewards) is loaded
    if loaded:
        info = host.plugins["ep"]
        assert (info.version, info.source) == ("9.9", "entry point of fake-dist")
        assert list(host.plugins) == ["templates", "ep"], "built-ins load before entry points"


def test_default_host_is_cached_and_resettable():
    host = default_host()
    assert default_host() is host
    assert {"r1gym/Countdown-v0", "r1gym/Arithmetic-v0"} <= set(host.envs)
    assert not host.failed, f"a built-in plugin failed: {host.failed}"
    default_host.cache_clear()
    try:
        fresh = default_host()
        assert fresh is not host and set(fresh.envs) == set(host.envs)
    finally:
        default_host.cache_clear()


def test_hookspec_module_docstring_example_works():
    """The example in hookspecs' module docstring is a working plugin."""
    doc = hookspecs.__doc__ or ""
    assert "::\n" in doc, "the module docstring should show an example plugin"
    code = textwrap.dedent(doc.split("::\n", 1)[1])
    mod = types.ModuleType("doc_example")
    exec(compile(code, "<hookspecs docstring>", "exec"), mod.__dict__)
    host = load(("doc_example", mod))
    assert host.rewards.get("shouting")("HI") == 1.0


@pytest.mark.parametrize(("declared", "ok"), [("1.0", True), ("1", True), (1, True), ("1.1", False), ("2.0", False),
                                              ("0.9", False), ("one", False)])
def test_plugin_api_version_is_checked(declared, ok):
    """A plugin declares the API it targets (``R1GYM_API``); one r1gym cannot serve fails, naming both versions."""
    assert hookspecs.API_VERSION == "1.0"
    mod = make_plugin("versioned", r1gym_register_rewards=lambda register: register("versioned_reward", reward_fn))
    mod.R1GYM_API = declared
    host = load(("versioned", mod))
    info = host.plugins["versioned"]
    assert info.api == str(declared)  # shown by `r1gym plugins` whether or not it fits
    if ok:
        assert host.failed == {} and "versioned_reward" in host.rewards
        return
    reason = host.failed["versioned"]
    assert reason.startswith("IncompatiblePlugin: ") and str(declared) in reason and "1.0" in reason
    if declared != "one":
        assert f"targets r1gym plugin API {declared}, this r1gym provides API 1.0" in reason
    assert "versioned_reward" not in host.rewards and info.contributes == {}
    with pytest.raises(UnknownNameError, match="plugin 'versioned' failed to load and registered nothing: IncompatiblePlugin"):
        host.rewards.get("versioned_reward")


def test_plugins_command_shows_each_plugins_api_version_and_the_mismatch(capsys):
    from r1gym.core.cli import cmd_plugins

    old = make_plugin("oldapi", r1gym_register_rewards=lambda register: register("oldapi_reward", reward_fn))
    old.R1GYM_API = "0.3"
    host = load(("undeclared", make_plugin("undeclared")), ("oldapi", old))
    assert cmd_plugins(host) == 1  # a plugin failed
    rows = {ln.split("│")[1].strip(): [c.strip() for c in ln.split("│")[1:-1]]
            for ln in capsys.readouterr().out.splitlines() if ln.count("│") >= 5}
    assert rows["templates"][2] == hookspecs.API_VERSION  # a built-in targets the API it ships with
    assert rows["undeclared"][2] == "-"
    assert rows["oldapi"][2] == "0.3" and "this r1gym provides API 1.0" in rows["oldapi"][4]


def test_versionadded_is_a_released_api_version():
    """``versionadded`` names the plugin API version that introduced a hook: never one newer than this r1gym's."""
    import re

    for name in HOOK_NAMES:
        (version,) = re.findall(r"versionadded:: (\d+\.\d+)", inspect.getdoc(getattr(hookspecs, name)) or "")
        assert plugins_mod._api_tuple(version) <= plugins_mod._api_tuple(hookspecs.API_VERSION), (name, version)


@pytest.mark.parametrize("hook_name", HOOK_NAMES)
def test_every_hook_is_in_the_plugin_authors_guide(hook_name):
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text(encoding="utf-8")
    assert f"`{hook_name}`" in guide, f"docs/plugins.md: add {hook_name} to the table of hooks"
    assert f'R1GYM_API = "{hookspecs.API_VERSION}"' in guide, "docs/plugins.md shows an old plugin API version"
