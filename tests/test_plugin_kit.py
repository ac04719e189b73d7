"""The plugin kit: ``r1gym plugin new`` writes a package that installs and passes its own tests as written, and
r1gym.testing's checks (which those tests run) catch what they claim to catch.

The package is installed the way tests/test_external_plugin.py installs the example plugin: pip, offline, into a
temporary folder put on ``PYTHONPATH`` of fresh interpreters, which find its entry point as in site-packages.
"""

from __future__ import annotations

import os
import itertools
import subprocess
import sys
import time
from pathlib import Path

import pytest

from r1gym.core.cli import main
from r1gym.core.hookspecs import API_VERSION, hookimpl
from r1gym.core.plugins import load_plugins
from r1gym.core.rewards import Unscorable
from r1gym.plugins.plugin_kit.kit import LAYOUT, plugin_names, write_plugin
from r1gym.testing import check_env, check_reward

NAME = "vowel-kit"


def _install(src: Path, target: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
           "--disable-pip-version-check", "--no-cache-dir", "-q", "--target", str(target), str(src)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"pip install of the generated plugin failed:\n{res.stdout}\n{res.stderr}"


def _run(cmd: list[str], site: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "250",
           "PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)}
    env.pop("R1GYM_DISABLE_PLUGIN_AUTOLOAD", None)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, Path]:
    """(the package folder written by the command, the folder it is installed in)."""
    work = tmp_path_factory.mktemp("kit")
    assert main(["plugin", "new", NAME, "--dir", str(work)]) == 0
    root = work / "r1gym-vowel-kit"
    _install(root, work / "site")
    return root, work / "site"


# -- the command --------------------------------------------------------------------------------------------------
def test_names_derive_from_the_one_given():
    n = plugin_names("word-count")
    assert (n.name, n.dist, n.package, n.env_id, n.reward, n.api) == (
        "word_count", "r1gym-word-count", "r1gym_word_count", "word_count/WordCount-v0", "word_count_exact", API_VERSION)


@pytest.mark.parametrize(("bad", "hint"), [("Word Count", "'word_count'"), ("9lives", "'my_9lives'"),
                                           ("a--b", "'a_b'"), ("class", "'class_task'")])
def test_bad_names_are_refused_with_a_suggestion(bad, hint):
    with pytest.raises(ValueError, match=hint):
        plugin_names(bad)


def test_the_command_writes_every_file_and_refuses_to_overwrite(tmp_path, capsys):
    assert main(["plugin", "new", "tiny", "--dir", str(tmp_path)]) == 0
    root = tmp_path / "r1gym-tiny"
    written = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert written == sorted(k.format(package="r1gym_tiny", name="tiny") for k in LAYOUT)
    assert "pip install -e ." in capsys.readouterr().out
    assert "$" not in (root / "r1gym_tiny" / "plugin.py").read_text()  # every placeholder was filled
    assert main(["plugin", "new", "tiny", "--dir", str(tmp_path)]) == 2
    assert "exists already" in capsys.readouterr().err
    with pytest.raises(ValueError, match="exists already"):
        write_plugin(plugin_names("tiny"), tmp_path)


def test_the_command_writes_into_the_working_folder_by_default(tmp_path, monkeypatch, capsys):
    """``r1gym plugin new NAME`` as typed, with no --dir: the package lands here and the listing is relative."""
    monkeypatch.chdir(tmp_path)
    assert main(["plugin", "new", "tiny"]) == 0
    out = capsys.readouterr().out
    assert f"in {tmp_path / 'r1gym-tiny'}:" in out and "  r1gym_tiny/plugin.py" in out
    assert (tmp_path / "r1gym-tiny" / "pyproject.toml").is_file()


def test_a_name_a_loaded_plugin_has_is_refused(tmp_path, capsys):
    assert main(["plugin", "new", "countdown", "--dir", str(tmp_path)]) == 2
    assert "a plugin named 'countdown' is already loaded" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_the_command_comes_from_a_plugin_through_the_hook():
    host = load_plugins(builtins=("r1gym.plugins.plugin_kit",), autoload=False)
    assert host.plugins["plugin_kit"].contributes == {"commands": ["plugin new"]}
    assert host.plugins["plugin_kit"].api == API_VERSION


# -- the generated package, installed ---------------------------------------------------------------------------------
def test_generated_plugin_passes_its_own_tests_as_written(generated):
    root, site = generated
    res = _run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider"], site, root)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert " passed" in res.stdout and "failed" not in res.stdout and "error" not in res.stdout.lower()
    assert f"r1gym plugin API {API_VERSION}, plugin under test: vowel_kit" in res.stdout  # the pytest11 plugin
    n_tests = (root / "tests" / "test_vowel_kit.py").read_text().count("\ndef test_")
    assert f"{n_tests} passed" in res.stdout, res.stdout[-800:]


@pytest.mark.slow  # a second install and test run (about 4 s)
def test_generated_tests_fail_when_the_reward_breaks_its_contract(generated, tmp_path):
    """Control for the test above: the same tests, on a copy whose reward returns 2.0, fail, naming the reason."""
    import shutil

    root, _ = generated
    broken = tmp_path / "r1gym-vowel-kit"
    shutil.copytree(root, broken, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    tasks = broken / "r1gym_vowel_kit" / "tasks.py"
    text = tasks.read_text()
    assert "return float(given is not None" in text
    tasks.write_text(text.replace("return float(given is not None", "return 2.0 * float(given is not None"))
    _install(broken, tmp_path / "site")
    res = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "reward"], tmp_path / "site", broken)
    assert res.returncode == 1, res.stdout[-3000:]
    assert "breaks the reward contract" in res.stdout and "outside [0.0, 1.0]" in res.stdout


def test_generated_plugin_installs_editable(generated, tmp_path):
    """``pip install -e .``, as its README says: the entry point is installed and the package maps to the source
    folder (the tests above use a regular install, which also proves the wheel ships the YAML)."""
    root, _ = generated
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
           "--disable-pip-version-check", "--no-cache-dir", "-q", "--target", str(tmp_path), "-e", str(root)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    (dist,) = tmp_path.glob("r1gym_vowel_kit-*.dist-info")
    assert "[r1gym]\nvowel_kit = r1gym_vowel_kit.plugin" in (dist / "entry_points.txt").read_text()
    (finder,) = tmp_path.glob("__editable___r1gym_vowel_kit_*_finder.py")
    assert repr(str(root / "r1gym_vowel_kit")) in finder.read_text()


def test_r1gym_sees_the_generated_plugin(generated):
    root, site = generated
    res = _run([sys.executable, "-m", "r1gym.core.cli", "plugins"], site, root.parent)
    assert res.returncode == 0, res.stdout + res.stderr
    (row,) = [ln for ln in res.stdout.splitlines() if " vowel_kit " in ln]
    for part in ("0.1.0", API_VERSION, "r1gym-vowel-kit", "vowel_kit/VowelKit-v0", "vowel_kit_exact"):
        assert part in row, f"{part!r} missing from {row!r}"
    code = ("import json, gymnasium, r1gym.envs\n"
            "obs, info = gymnasium.make('vowel_kit/VowelKit-v0').reset(seed=0)\n"
            "print(json.dumps(obs[-1]['content']))")
    res = _run([sys.executable, "-c", code], site, root.parent)  # an entry-point plugin's env, lazily registered
    assert res.returncode == 0 and "How many vowels" in res.stdout, res.stdout + res.stderr


# -- r1gym.testing's checks, each shown to catch what it claims ------------------------------------------------------
def exact(completion: str, *, answer: str) -> float:
    if not answer:
        raise Unscorable("no reference answer")
    return float(completion.strip().endswith(answer))


EXAMPLES = [("the answer is 4", {"answer": "4"}, 1.0), ("the answer is 5", {"answer": "4"}, 0.0)]
UNSCORABLE = [("4", {"answer": ""})]


def test_a_reward_that_keeps_the_contract_passes():
    check_reward(exact, EXAMPLES, unscorable=UNSCORABLE)


def _slow(completion: str, *, answer: str) -> float:
    time.sleep(0.3 if len(completion) > 100_000 else 0)
    return exact(completion, answer=answer)


_shared = {"value": 0.0}
_calls = itertools.count()  # a reward whose value alternates from call to call


def _racy(completion: str, *, answer: str) -> float:
    _shared["value"] = exact(completion, answer=answer)  # a result parked in shared state
    time.sleep(0.01)
    return _shared["value"]


def _pops(completion: str, **fields) -> float:
    fields.get("answers", []).append(completion)  # mutates a list the task owns
    return float(bool(fields.get("answer")) and completion.endswith(fields["answer"]))


BROKEN = {
    "out of range": (lambda completion, *, answer: 2.0 * exact(completion, answer=answer), "outside [0.0, 1.0]"),
    "a bool": (lambda completion, *, answer: completion.endswith(answer) if answer else None, "not a float"),
    "expected value": (lambda completion, *, answer: 1.0 if answer else None, "expected 0.0"),
    "raises on garbage": (lambda completion, *, answer: float(completion.split()[-1] == answer) if answer else None,
                          "raised IndexError"),
    "masks garbage": (lambda completion, *, answer: None if not completion.strip() else exact(completion, answer=answer),
                      "said it cannot score"),
    "flaky": (lambda completion, *, answer: exact(completion, answer=answer) * (next(_calls) % 2) if answer else None,
              "not deterministic"),
    "too slow": (_slow, "no result after"),
    "racy": (_racy, "not thread safe"),
    "zero for a broken task": (lambda completion, *, answer: float(bool(answer) and completion.endswith(answer)),
                               "it must return None or raise Unscorable"),
}


@pytest.mark.parametrize("flaw", sorted(BROKEN))
def test_check_reward_catches(flaw):
    fn, message = BROKEN[flaw]
    with pytest.raises(AssertionError, match="breaks the reward contract") as err:
        check_reward(fn, EXAMPLES, unscorable=UNSCORABLE, timeout_s=0.2, threads=8)
    assert message in str(err.value), str(err.value)


def test_check_reward_catches_a_mutated_field():
    with pytest.raises(AssertionError, match="changed the task's fields"):
        check_reward(_pops, [("the answer is 4", {"answer": "4", "answers": []}, 1.0)])


def test_check_reward_takes_a_registered_name_and_its_params():
    check_reward("format", [("<think> a </think> <answer> b </answer>", {}, 1.0), ("no tags", {}, 0.0)],
                 host=load_plugins(builtins=("r1gym.plugins.templates",), autoload=False))


#: every built-in env but General-v0 and Mixture-v0, whose judge loads a model (minutes on a CPU; they pass)
BUILTIN_ENVS = ["r1gym/Countdown-v0", "r1gym/CountdownRetry-v0", "r1gym/Arithmetic-v0", "r1gym/Math-v0",
                "r1gym/Dataset-v0", "r1gym/Code-v0", "r1gym/CodeExec-v0"]


@pytest.fixture(scope="module")
def host():
    return load_plugins(autoload=False)


@pytest.mark.parametrize("env_id", BUILTIN_ENVS)
def test_builtin_envs_keep_the_env_contract(env_id, host):
    check_env(env_id, host=host)


class _Unseeded:
    """A task source whose tasks depend on the wall clock, not on the index: reset(seed=s) is not reproducible."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int):
        from r1gym.envs.base import Task

        return Task(f"t{time.perf_counter_ns()}", f"What is {time.perf_counter_ns()} + 0?", {"answer": "0"})


def test_check_env_catches_an_env_that_is_not_reproducible():
    @hookimpl
    def r1gym_register_task_sources(register):
        register("unseeded", _Unseeded)

    plugin = type("P", (), {"r1gym_register_task_sources": staticmethod(r1gym_register_task_sources)})
    host = load_plugins(builtins=("r1gym.plugins.templates", "r1gym.plugins.arithmetic"), autoload=False,
                        extra=[("unseeded", plugin)])
    with pytest.raises(AssertionError, match="breaks the r1gym env contract") as err:
        check_env("r1gym/Arithmetic-v0", host=host, source={"name": "unseeded"}, rewards={"format": 1.0})
    assert "reset(seed=0) twice gave different observations" in str(err.value)
    assert "did not pin the task" in str(err.value)


def test_fixtures_of_the_pytest_plugin_are_registered(request):
    """pytest loaded r1gym.testing through its pytest11 entry point in this very session."""
    assert request.config.pluginmanager.has_plugin("r1gym")
    assert request.getfixturevalue("r1gym_host").plugins["plugin_kit"].error is None
    make_env = request.getfixturevalue("make_env")
    obs, _ = make_env("r1gym/Arithmetic-v0").reset(seed=0)
    assert obs[-1]["role"] == "user"


def test_the_pytest_plugin_is_light_to_import():
    """pytest imports r1gym.testing.plugin in every session wherever r1gym is installed: no torch, no gymnasium."""
    code = ("import sys, r1gym.testing, r1gym.testing.plugin\n"
            "print([m for m in ('torch', 'transformers', 'gymnasium', 'r1gym.plugins.code.conformance') if m in sys.modules])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stdout + res.stderr
