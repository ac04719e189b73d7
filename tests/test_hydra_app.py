"""``r1gym train``/``eval``/``pipeline`` are Hydra applications (r1gym.core.hydra_app): sweeps with the basic,
joblib and submitit launchers, Hydra's flags, search path, shell completion and output folders, and
``resume=`` composed by Hydra. Every sweep job here is a real one-step GRPO run of a tiny random model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from r1gym.core.cli import main
from r1gym.core.config import resume_overrides


def _tiny_run(model_dir: Path) -> list[str]:
    """The cheapest real job: one GRPO step of 1 prompt x 2 samples x 4 tokens, no evaluation."""
    return [f"model.name_or_path={model_dir}", "env=arithmetic", "algo.prompts_per_step=1", "algo.group_size=2",
            "rollout.max_new_tokens=4", "trainer.max_steps=1", "trainer.save_every=1", "trainer.threads=1",
            "eval.at_start=false", "eval.at_end=false", "logger=jsonl_only"]


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _check_sweep(sweep: Path, lrs: list[float]) -> None:
    """Each job ran in its own folder (hydra.sweep.dir/<num>-<stage>), with its own value, Hydra's record and
    r1gym's files side by side."""
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in jobs] == [f"{i}-r1_zero" for i in range(len(lrs))]
    assert (sweep / "multirun.yaml").is_file()
    for job, lr in zip(jobs, lrs):
        assert [m["step"] for m in _metrics(job)] == [1] and _metrics(job)[0]["lr"] == pytest.approx(lr)
        assert yaml.safe_load((job / "config.yaml").read_text())["run_dir"] == str(job)
        saved = dict(o.split("=", 1) for o in (job / "overrides.txt").read_text().splitlines())
        assert float(saved["algo.optim.lr"]) == lr  # what resume= of this job composes again
        assert (job / ".hydra" / "overrides.yaml").is_file() and (job / "r1gym.log").is_file()
        assert (job / "checkpoints" / "step_000001" / "trainer_state.pt").is_file()


def test_a_sweep_with_the_basic_launcher(tiny_model_dir, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    assert main(["train", "-m", *_tiny_run(tiny_model_dir), "algo.optim.lr=1e-6,1e-5", f"hydra.sweep.dir={sweep}"]) == 0
    _check_sweep(sweep, [1e-6, 1e-5])
    assert capsys.readouterr().out.count("run folder: ") == 2


def test_a_sweep_with_the_joblib_launcher(tiny_model_dir, tmp_path):
    """The jobs run in joblib's worker processes (the extra ``joblib``): the task must travel there pickled."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install 'r1gym[joblib]'")
    sweep = tmp_path / "sweep"
    assert main(["train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *_tiny_run(tiny_model_dir),
                 "algo.optim.lr=1e-6,1e-5", f"hydra.sweep.dir={sweep}"]) == 0
    _check_sweep(sweep, [1e-6, 1e-5])
    launcher = yaml.safe_load((sweep / "0-r1_zero" / ".hydra" / "hydra.yaml").read_text())["hydra"]["launcher"]
    assert launcher["_target_"].endswith("JoblibLauncher") and launcher["n_jobs"] == 2


@pytest.mark.slow
def test_a_job_with_the_submitit_local_launcher(tiny_model_dir, tmp_path):
    """submitit_local (extra ``slurm``) runs the job in a process it starts, as it would on a SLURM node."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install 'r1gym[slurm]'")
    sweep = tmp_path / "sweep"
    assert main(["train", "-m", "hydra/launcher=submitit_local", *_tiny_run(tiny_model_dir), "algo.optim.lr=1e-6",
                 f"hydra.sweep.dir={sweep}"]) == 0
    _check_sweep(sweep, [1e-6])
    assert (sweep / ".submitit").is_dir()


def test_a_run_lands_in_hydras_output_folder_and_resumes_with_a_group_override(tiny_model_dir, tmp_path, capsys):
    """Without run_dir, the run's folder is hydra.run.dir; ``resume=`` composes the run's saved overrides again
    with the new ones on top, so ``algo=dapo`` (a group) switches the algorithm of the continued run."""
    run = tmp_path / "out"
    assert main(["train", *_tiny_run(tiny_model_dir), f"hydra.run.dir={run}"]) == 0
    assert f"run folder: {run}" in capsys.readouterr().out
    assert (run / ".hydra" / "config.yaml").is_file() and (run / "config.yaml").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["algo"]["name"] == "grpo"

    assert main(["train", f"resume={run}", "algo=dapo", "trainer.max_steps=2"]) == 0
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert (cfg["algo"]["name"], cfg["algo"]["loss_aggregation"]) == ("dapo", "token_mean")
    assert (cfg["algo"]["group_size"], cfg["trainer"]["max_steps"], cfg["resume"]) == (2, 2, str(run))
    assert [m["step"] for m in _metrics(run)] == [1, 2]  # continued after step 1, not from scratch
    saved = (run / "overrides.txt").read_text().splitlines()
    assert "algo=dapo" in saved and "trainer.max_steps=2" in saved and "trainer.max_steps=1" not in saved
    assert "algo.group_size=2" in saved and not any(o.startswith("resume=") for o in saved)


def test_resume_precedence(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "overrides.txt").write_text("env=arithmetic\n+env.kwargs.rewards.extra=1.0\nalgo.group_size=2\n"
                                       f"run_dir={tmp_path / 'old'}\n")
    merged, resumed = resume_overrides([f"resume={run}", "algo=dapo", "env.kwargs.rewards.extra=0.5",
                                        "algo.group_size=4"])
    assert resumed == str(run)
    assert merged == ["env=arithmetic", "algo=dapo", "+env.kwargs.rewards.extra=0.5", "algo.group_size=4",
                      f"run_dir={run}", f"resume={run}"]
    assert resume_overrides(["algo=dapo"]) == (["algo=dapo"], None)
    with pytest.raises(FileNotFoundError, match="no overrides.txt or .hydra/overrides.yaml"):
        resume_overrides([f"resume={tmp_path}"])


def test_resumed_config_is_recomposed_by_hydra(tmp_path, capsys):
    """A run made by Hydra alone (only .hydra/overrides.yaml) resumes too; --cfg job shows the resumed config."""
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("- env=arithmetic\n- algo=dr_grpo\n")
    assert main(["train", "--cfg", "job", f"resume={run}", "algo=dapo"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert (cfg["env"]["id"], cfg["algo"]["name"], cfg["run_dir"], cfg["resume"]) == (
        "r1gym/Arithmetic-v0", "dapo", str(run), str(run))
    assert main(["train", "-m", f"resume={run}", "trainer.seed=0,1"]) == 2
    assert "resume= continues one run; it takes no -m" in capsys.readouterr().err


def _host_with_config_dir(folder: Path):
    from r1gym.core.hookspecs import hookimpl
    from r1gym.core.plugins import load_plugins

    class ConfigFolder:
        @hookimpl
        def r1gym_register_config_dirs(self, register):
            register(folder.as_uri())

    return load_plugins(extra=[("folder_plugin", ConfigFolder())])


def _env_option(folder: Path, name: str, env_id: str) -> Path:
    (folder / "env").mkdir(parents=True)
    (folder / "env" / f"{name}.yaml").write_text(f"id: {env_id}\nkwargs: {{}}\n")
    return folder


def test_a_users_searchpath_and_the_plugins_config_folders_both_count(tmp_path, capsys):
    plugin_dir = _env_option(tmp_path / "plugin", "from_plugin", "r1gym/Countdown-v0")
    user_dir = _env_option(tmp_path / "user", "from_user", "r1gym/Arithmetic-v0")
    host = _host_with_config_dir(plugin_dir)
    searchpath = f"hydra.searchpath=[{user_dir.as_uri()}]"
    assert main(["train", "--info", "searchpath", searchpath], host=host) == 0
    out = capsys.readouterr().out
    assert plugin_dir.as_uri() in out and user_dir.as_uri() in out
    for option, env_id in (("from_plugin", "r1gym/Countdown-v0"), ("from_user", "r1gym/Arithmetic-v0")):
        assert main(["train", "--cfg", "job", searchpath, f"env={option}"], host=host) == 0
        assert yaml.safe_load(capsys.readouterr().out)["env"]["id"] == env_id
    assert main(["train", "--cfg", "job", "-cd", str(user_dir), "env=from_user"]) == 0  # Hydra's --config-dir
    assert yaml.safe_load(capsys.readouterr().out)["env"]["id"] == "r1gym/Arithmetic-v0"


def test_hydra_flags(capsys):
    assert main(["train", "--cfg", "hydra"]) == 0
    out = capsys.readouterr().out
    assert "dir: runs/${now:%Y%m%d-%H%M%S}-${stage.name}" in out and "subdir: ${hydra.job.num}-${stage.name}" in out
    assert main(["eval", "--cfg", "job", "--resolve", "env=arithmetic"]) == 0  # r1gym eval picks stage=eval
    assert yaml.safe_load(capsys.readouterr().out)["stage"] == {"name": "eval", "kind": "eval"}
    assert main(["train", "--info", "defaults"]) == 0
    assert "algo/grpo" in capsys.readouterr().out
    assert main(["train", "-m", "run_dir=/tmp/one", "trainer.seed=0,1"]) == 2
    assert "every job of the sweep in one folder" in capsys.readouterr().err


def test_shell_completion_through_bash(tmp_path):
    """The script ``r1gym train -sc install=bash`` prints, evaluated by bash, completes ``r1gym train env=ar``
    (it calls ``r1gym -sc query=bash``, which hands the line to the train application) and the subcommands."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("needs bash")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    script = ('eval "$(r1gym train -sc install=bash)"\n'
              'complete_line() { COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}; read -ra w <<< "$1"; '
              'COMP_CWORD=$(( ${#w[@]} - 1 )); hydra_bash_completion; echo "${COMPREPLY[*]}"; }\n'
              'complete_line "r1gym train env=arith"\ncomplete_line "r1gym pipeline pipeline=r1_t"\ncomplete_line "r1gym tra"\n')
    res = subprocess.run([bash, "-c", script], capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines == ["env=arithmetic env=arithmetic_fewshot", "pipeline=r1_tiny", "train"], res.stdout


def test_config_check_reports_a_misspelled_reward(capsys):
    pytest.importorskip("r1gym.core.validate")
    assert main(["config", "--check", "env=countdown"]) == 0
    assert "every name and parameter is known" in capsys.readouterr().err
    assert main(["config", "--check", "env=countdown", "+env.kwargs.rewards.countdwn=1.0"]) == 2
    err = capsys.readouterr().err
    assert "countdwn" in err and "countdown" in err


def test_a_config_error_leaves_no_run_folder_and_a_sweeps_jobs_write_nothing_of_theirs(tmp_path, capsys):
    """A single run is checked before Hydra makes its output folder: none is left behind. A sweep's jobs are
    checked in the job (Hydra makes each job's folder first): only Hydra's record is there, no config.yaml
    or overrides.txt that ``resume=`` would take for a run."""
    typo = ["env=countdown", "+env.kwargs.rewards.countdwn=1.0"]
    assert main(["train", *typo, f"run_dir={tmp_path / 'run'}"]) == 2
    assert "Did you mean 'countdown'?" in capsys.readouterr().err
    assert main(["train", *typo, f"hydra.run.dir={tmp_path / 'hydra_run'}"]) == 2
    assert main(["eval", "stage=r1_zero", f"run_dir={tmp_path / 'eval'}"]) == 2
    assert "r1gym eval runs stage.kind=eval stages" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    sweep = tmp_path / "sweep"
    assert main(["train", "-m", *typo, "trainer.seed=0,1", f"hydra.sweep.dir={sweep}"]) == 2
    assert "Did you mean 'countdown'?" in capsys.readouterr().err
    assert (sweep / "0-r1_zero" / ".hydra" / "config.yaml").is_file() and (sweep / "0-r1_zero" / "r1gym.log").is_file()
    assert not list(sweep.glob("*/config.yaml")) and not list(sweep.glob("*/overrides.txt"))


def test_a_run_uses_the_plugin_host_main_was_given(tiny_model_dir, tmp_path, capsys):
    """``main(argv, host=...)``: the check and the run use that host (its reward scores the samples), not the
    process-wide one, which has no such reward. The job travels to other processes as its command alone."""
    import pickle

    from r1gym.core.hookspecs import hookimpl
    from r1gym.core.hydra_app import Job
    from r1gym.core.plugins import load_plugins

    scored = []

    class Counted:
        @hookimpl
        def r1gym_register_rewards(self, register):
            register("counted", lambda completion, **_: scored.append(completion) or 0.0, description="test-only")

    host = load_plugins(autoload=False, extra=[("counted", Counted())])
    args = ["train", *_tiny_run(tiny_model_dir), "+env.kwargs.rewards.counted=0.5"]
    assert main([*args, f"run_dir={tmp_path / 'global'}"]) == 2
    assert "unknown reward 'counted'" in capsys.readouterr().err
    assert main([*args, f"run_dir={tmp_path / 'run'}"], host=host) == 0
    assert len(scored) == 2  # 1 prompt x 2 samples, each scored by the host's reward
    assert [m["step"] for m in _metrics(tmp_path / "run")] == [1]
    travelled = pickle.loads(pickle.dumps(Job("train", host)))
    assert travelled == Job("train") and travelled.host is None


def test_a_resume_with_nothing_to_resume_from_leaves_the_run_as_it_was(tmp_path, capsys):
    """A run that logged steps but saved no checkpoint cannot be resumed: refused before the run's own record
    (overrides.txt, what the next resume= reads; config.yaml) is rewritten with the new overrides."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "overrides.txt").write_text("env=arithmetic\ntrainer.max_steps=3\n")
    (run / "config.yaml").write_text("stage: {name: r1_zero}\n")
    (run / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n')
    before = {p.name: p.read_text() for p in run.iterdir()}
    assert main(["train", f"resume={run}", "trainer.max_steps=5"]) == 2
    err = capsys.readouterr().err
    assert "logged steps up to 2" in err and "saved no checkpoint" in err
    assert {p.name: p.read_text() for p in run.iterdir()} == before
