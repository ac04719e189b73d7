"""``import r1gym.envs`` registers every plugin's env ids in gymnasium's registry, lazily (gymnasium's own
convention), so ``gymnasium.make`` works in a fresh interpreter with no plugin host built first.

Each check runs in a fresh interpreter: in this test process the registry is already filled by other tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "hydra", "omegaconf", "sympy", "datasets")


def fresh(code: str, **env: str) -> dict:
    environ = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120,
                         env=environ)
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_import_registers_every_builtin_id_and_imports_nothing_heavy():
    out = fresh(f"""
        import json, sys
        import gymnasium
        before = sorted(k for k in gymnasium.registry if k.startswith("r1gym/"))
        import r1gym.envs
        from r1gym.core import plugins
        specs = {{k: (s.entry_point, s.kwargs) for k, s in gymnasium.registry.items() if k.startswith("r1gym/")}}
        print(json.dumps(dict(before=before, specs=specs, heavy=[m for m in {HEAVY!r} if m in sys.modules],
                              task_code=sorted(m for m in sys.modules if m.startswith("r1gym.plugins.") and
                                               m.count(".") > 2),
                              host_built=plugins.default_host.cache_info().currsize)))
    """)
    assert out["before"] == []  # control: gymnasium alone knows none of them
    assert {"r1gym/Countdown-v0", "r1gym/CountdownRetry-v0", "r1gym/Arithmetic-v0", "r1gym/Math-v0", "r1gym/Code-v0",
            "r1gym/CodeExec-v0", "r1gym/Dataset-v0", "r1gym/General-v0", "r1gym/Mixture-v0"} <= set(out["specs"])
    entry_point, kwargs = out["specs"]["r1gym/CountdownRetry-v0"]
    assert entry_point == "r1gym.plugins.countdown.envs:CountdownRetryEnv" and kwargs["max_turns"] == 3
    assert out["heavy"] == [], "import r1gym.envs loaded a heavy library"
    assert out["task_code"] == [], "only the plugin modules themselves may be imported, not their task code"
    assert out["host_built"] == 0, "the plugin host was built at import"


def test_gymnasium_make_works_directly_and_matches_the_host_spec():
    out = fresh("""
        import json
        import gymnasium, r1gym.envs

        env = gymnasium.make("r1gym/Countdown-v0")
        obs, info = env.reset(seed=5)
        _, reward, terminated, truncated, step_info = env.step("<think> no </think> <answer> 1 </answer>")
        also = gymnasium.make("r1gym.envs:r1gym/Arithmetic-v0").reset(seed=0)[0]  # gymnasium's module:id form
        from r1gym.core.plugins import default_host
        host = default_host()
        same = all(gymnasium.spec(i).entry_point == host.envs.get(i).entry_point and
                   gymnasium.spec(i).kwargs == host.envs.get(i).kwargs for i in host.envs)
        print(json.dumps(dict(prompt=obs[-1]["content"], task=info["task_id"], reward=reward, rewards=step_info["rewards"],
                              done=terminated, arith=also[-1]["content"], same=same, failed=host.failed)))
    """)
    assert "equals" in out["prompt"] and out["task"]
    assert out["rewards"] == {"countdown": 0.0, "format": 1.0} and out["reward"] == pytest.approx(0.1)
    assert out["done"] and out["arith"] and out["same"] and out["failed"] == {}


def test_entry_point_plugins_and_r1gym_plugins_are_registered_too(tmp_path):
    """A plugin found through ``R1GYM_PLUGINS`` (the entry-point path is covered in test_external_plugin.py)
    declares its env; a plugin whose env hook raises is skipped and takes nothing else down."""
    (tmp_path / "r1gym_tests_lazy_plugin.py").write_text(textwrap.dedent("""
        from r1gym.core.hookspecs import hookimpl
        R1GYM_API = "1.0"

        @hookimpl
        def r1gym_register_envs(register):
            register("lazytest/Words-v0", "r1gym.envs.base:SingleTurnEnv",
                     kwargs={"source": {"name": "arithmetic"}, "rewards": {"format": 1.0}})
    """))
    (tmp_path / "r1gym_tests_lazy_broken.py").write_text(textwrap.dedent("""
        from r1gym.core.hookspecs import hookimpl

        @hookimpl
        def r1gym_register_envs(register):
            raise RuntimeError("broken on purpose")
    """))
    (tmp_path / "r1gym_tests_lazy_future.py").write_text(textwrap.dedent("""
        from r1gym.core.hookspecs import hookimpl
        R1GYM_API = "2.0"

        @hookimpl
        def r1gym_register_envs(register):
            register("lazytest/Future-v0", "r1gym.envs.base:SingleTurnEnv", kwargs={})
    """))
    out = fresh("""
        import json, gymnasium, r1gym.envs
        obs, _ = gymnasium.make("lazytest/Words-v0").reset(seed=1)
        print(json.dumps(dict(ids=sorted(gymnasium.registry), prompt=obs[-1]["content"])))
    """, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        R1GYM_PLUGINS="r1gym_tests_lazy_broken,r1gym_tests_lazy_plugin,r1gym_tests_lazy_future")
    assert "lazytest/Words-v0" in out["ids"] and "r1gym/Countdown-v0" in out["ids"]
    assert "lazytest/Future-v0" not in out["ids"], "a plugin for another API version declared its env"
    assert out["prompt"]


def _dist_with_entry_point(site: Path) -> None:
    """A minimal installed distribution (what pip leaves in site-packages) whose ``r1gym`` entry point names a
    plugin module: importlib.metadata finds it on ``PYTHONPATH`` exactly as it finds a pip-installed one."""
    (site / "r1gym_tests_ep_envs.py").write_text(textwrap.dedent("""
        from r1gym.core.hookspecs import hookimpl

        @hookimpl
        def r1gym_register_envs(register):
            register("eptest/Sum-v0", "r1gym.envs.base:SingleTurnEnv",
                     kwargs={"source": {"name": "arithmetic"}, "rewards": {"arithmetic": 1.0}})
    """))
    dist = site / "r1gym_tests_ep_envs-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: r1gym-tests-ep-envs\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text("[r1gym]\nep_envs = r1gym_tests_ep_envs\n")


@pytest.mark.parametrize("disabled", [False, True])
def test_entry_point_plugin_envs_follow_the_autoload_switch(tmp_path, disabled):
    _dist_with_entry_point(tmp_path)
    out = fresh("""
        import json, gymnasium, r1gym.envs
        ids = sorted(gymnasium.registry)
        obs = gymnasium.make("eptest/Sum-v0").reset(seed=0)[0] if "eptest/Sum-v0" in ids else None
        print(json.dumps(dict(ids=ids, obs=obs)))
    """, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        **({"R1GYM_DISABLE_PLUGIN_AUTOLOAD": "1"} if disabled else {}))
    assert "r1gym/Countdown-v0" in out["ids"]
    assert ("eptest/Sum-v0" in out["ids"]) is not disabled
    if not disabled:
        assert out["obs"][-1]["role"] == "user"


def test_declared_envs_equal_the_hosts():
    """The light path and the host agree, id for id and plugin for plugin (same plugins, same hook)."""
    from r1gym.core.plugins import declared_envs, load_plugins

    host = load_plugins(autoload=False)
    declared = {e.env_id: (plugin, e) for plugin, e in declared_envs(autoload=False)}
    assert set(declared) == set(host.envs)
    for env_id, (plugin, entry) in declared.items():
        assert host.envs.entries[env_id].plugin == plugin and host.envs.get(env_id) == entry


def test_the_module_docstring_example_runs():
    import r1gym.envs

    block = r1gym.envs.__doc__.split("::\n", 1)[1]
    code = textwrap.dedent("\n".join(ln for ln in block.splitlines()[:6] if not ln.strip().startswith("Registration")))
    assert "gymnasium.make(" in code
    out = fresh(code + "\nimport json; print(json.dumps(env.reset(seed=0)[1]))\n")
    assert out["task_id"]
