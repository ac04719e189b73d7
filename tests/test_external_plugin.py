"""The example plugin in ``examples/r1gym-echo-plugin`` works as a real third-party distribution.

The fixture builds and installs it with pip (offline: ``--no-index --no-build-isolation``) into a temporary
folder, not into the shared venv, so nothing leaks into other processes using the venv or survives a killed
run. The folder goes on ``PYTHONPATH`` of fresh interpreters, which then find the plugin exactly as they
would in site-packages: through its ``*.dist-info/entry_points.txt``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "r1gym-echo-plugin"
ENV_ID = "echo/Reverse-v0"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("echo-plugin")
    src, target = work / "src", work / "site"
    # build from a copy: an in-tree build would leave build/ and *.egg-info in the repository
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
           "--disable-pip-version-check", "--no-cache-dir", "-q", "--target", str(target), str(src)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"pip install of the example plugin failed:\n{res.stdout}\n{res.stderr}"
    assert list(target.glob("r1gym_echo-*.dist-info")), f"no dist-info in {sorted(p.name for p in target.iterdir())}"
    yield target
    shutil.rmtree(work, ignore_errors=True)


def run(site: Path | None, *args: str, code: str | None = None, disable_autoload: bool = False,
        cwd: Path | None = None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "250"}
    env.pop("R1GYM_DISABLE_PLUGIN_AUTOLOAD", None)
    if disable_autoload:
        env["R1GYM_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site) if site else "", env.get("PYTHONPATH", "")) if p)
    if code is not None:
        cmd = [sys.executable, "-c", code]
    else:
        cmd = [sys.executable, *args] if args[0] == "-m" else [sys.executable, "-m", "r1gym.core.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd or (site.parent if site else None),
                          env=env)


def test_installed_files(site):
    assert (site / "r1gym_echo" / "conf" / "env" / "reverse.yaml").is_file(), "the Hydra config is not package data"
    (dist,) = site.glob("r1gym_echo-*.dist-info")
    assert "[r1gym]\necho = r1gym_echo.plugin" in (dist / "entry_points.txt").read_text()


def test_plugins_lists_it_with_version_and_contributions(site):
    res = run(site, "plugins")
    assert res.returncode == 0, res.stdout + res.stderr  # 0: no plugin failed
    (row,) = [ln for ln in res.stdout.splitlines() if " echo " in ln]
    for part in ("0.1.0", "r1gym-echo", ENV_ID, "reverse_exact", "reverse_words", "pkg://r1gym_echo.conf",
                 " 1.0 "):  # the plugin API version it declares (R1GYM_API)
        assert part in row, f"{part!r} missing from {row!r}"


def test_envs_lists_it(site):
    res = run(site, "envs")
    assert res.returncode == 0, res.stderr
    lines = {ln.split()[0]: ln for ln in res.stdout.splitlines() if ln.strip()}
    assert ENV_ID in lines and "[echo]" in lines[ENV_ID]
    assert "r1gym/Countdown-v0" in lines  # the built-ins are still there


def test_gymnasium_make_and_check_env(site):
    code = textwrap.dedent(f"""
        import json, warnings
        import gymnasium
        from gymnasium.utils.env_checker import check_env
        from r1gym.core.plugins import default_host

        host = default_host()
        assert not host.failed, host.failed
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            warnings.filterwarnings("ignore", message=r".*No render fps was declared")
            check_env(gymnasium.make({ENV_ID!r}).unwrapped)
        env = gymnasium.make({ENV_ID!r})
        obs, info = env.reset(seed=3)
        obs2, info2 = gymnasium.make({ENV_ID!r}).reset(seed=3)
        word = env.unwrapped.task.fields["word"]
        _, right, term, trunc, step_info = env.step("<think> backwards </think> <answer> " + word[::-1] + " </answer>")
        env.reset(seed=3)
        _, wrong, *_ = env.step("<think> forwards </think> <answer> " + word + " </answer>")
        print(json.dumps(dict(same=obs == obs2 and info == info2, leaked=word[::-1] in json.dumps(info),
                              word=word, prompt=obs[-1]["content"], right=right, wrong=wrong,
                              components=step_info["rewards"], terminated=term, truncated=trunc)))
    """)
    res = run(site, code=code)
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["same"], "the same seed gave different tasks"
    assert not out["leaked"], "the answer appears in info"
    assert f"'{out['word']}'" in out["prompt"]
    assert out["components"] == {"reverse_exact": 1.0, "format": 1.0}
    assert out["right"] == pytest.approx(1.1) and out["wrong"] == pytest.approx(0.1)
    assert out["terminated"] and not out["truncated"]


def test_gymnasium_make_after_importing_r1gym_envs(site):
    """Gymnasium's convention: importing the env package registers the ids, here an entry-point plugin's,
    without a plugin host (nor its task code) loaded first."""
    code = textwrap.dedent(f"""
        import json, sys
        import gymnasium, r1gym.envs
        before = [m for m in ("r1gym_echo.tasks", "torch") if m in sys.modules]
        obs, info = gymnasium.make({ENV_ID!r}).reset(seed=3)
        print(json.dumps(dict(before=before, prompt=obs[-1]["content"], task=info["task_id"])))
    """)
    res = run(site, code=code)
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["before"] == [] and "backwards" in out["prompt"] and out["task"].startswith("reverse-train-")


def test_its_own_tests_pass_with_r1gym_testing(site):
    """The example's tests (tests/test_echo.py, r1gym.testing's fixtures and checks) pass as shipped."""
    res = run(site, "-m", "pytest", "-p", "no:cacheprovider", "-q", cwd=site.parent / "src")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    n_tests = (EXAMPLE / "tests" / "test_echo.py").read_text().count("\ndef test_")
    assert f"{n_tests} passed" in res.stdout, res.stdout[-800:]


def test_config_selects_its_hydra_option(site):
    res = run(site, "config", "env=reverse", "env.kwargs.source.max_len=8")
    assert res.returncode == 0, res.stderr
    assert f"id: {ENV_ID}" in res.stdout
    assert "max_len: 8" in res.stdout and "case_sensitive: false" in res.stdout


def test_config_typo_in_its_option_is_caught_by_the_schema(site):
    res = run(site, "config", "env=reverse", "env.idd=x")
    assert res.returncode == 2
    assert "idd" in res.stderr


def test_make_envs_from_its_config(site):
    code = textwrap.dedent("""
        from r1gym.core.config import compose
        from r1gym.core.env_factory import make_envs
        from r1gym.core.plugins import default_host

        cfg = compose(["env=reverse", "env.kwargs.source.max_len=4"], config_dirs=default_host().config_dirs)
        (train,) = make_envs(cfg.env, 1)
        (test,) = make_envs(cfg.env, 1, eval_split=True)
        t, e = train.unwrapped.source, test.unwrapped.source
        words = [t[i].fields["word"] for i in range(50)]
        print(t.split, e.split, max(map(len, words)), train.unwrapped.reward_set.components[0].params)
    """)
    res = run(site, code=code)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.split() == ["train", "test", "4", "{'case_sensitive':", "False}"]


def test_autoload_disabled_hides_it(site):
    res = run(site, "envs", disable_autoload=True)
    assert res.returncode == 0, res.stderr
    assert ENV_ID not in res.stdout and "r1gym/Countdown-v0" in res.stdout
    res = run(site, "plugins", disable_autoload=True)
    assert " echo " not in res.stdout
    res = run(site, "config", "env=reverse", disable_autoload=True)
    assert res.returncode == 2
    assert "Could not find 'env/reverse'" in res.stderr
    assert "Available options in 'env'" in res.stderr and "countdown" in res.stderr


def test_not_installed_means_not_there():
    """Control for the tests above: without the install folder on the path, nothing of it shows."""
    if importlib.util.find_spec("r1gym_echo") is not None:
        pytest.skip("r1gym-echo is installed in this environment itself, so there is no control case")
    res = run(None, "envs")
    assert res.returncode == 0 and ENV_ID not in res.stdout


def test_its_docstring_examples(site):
    code = "import doctest, r1gym_echo.tasks as t; r = doctest.testmod(t); print(r.attempted, r.failed)"
    res = run(site, code=code)
    assert res.returncode == 0, res.stdout + res.stderr
    attempted, failed = map(int, res.stdout.split()[-2:])
    assert attempted >= 4 and failed == 0, res.stdout
