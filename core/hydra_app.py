"""``r1gym train``, ``r1gym eval`` and ``r1gym pipeline`` as Hydra applications.

Each runs through Hydra's own application entry point (``_run_hydra``, what ``@hydra.main`` calls) with the
arguments after the subcommand, so the Hydra a user knows is the one they get: ``-m`` sweeps with the
configured sweeper and launcher (basic; ``hydra/launcher=joblib`` with the ``joblib`` extra; ``submitit_local``
and ``submitit_slurm`` with ``slurm``), ``--cfg job|hydra|all [--resolve]``, ``--info``, ``-cd/-cp/-cn``,
``hydra.searchpath=[...]``, ``-sc install=bash`` and the run and sweep folders of ``hydra.run.dir`` and
``hydra.sweep.dir`` (conf/config.yaml). A run's folder is Hydra's output folder unless ``run_dir`` is set.

What r1gym does before Hydra sees the overrides (:func:`prepare`), each a rule a user can read off the
command line: ``resume=RUN`` is expanded into RUN's saved overrides with the new ones on top
(:func:`r1gym.core.config.resume_overrides`); ``run_dir=X`` (``pipeline.run_dir=X``) also sets
``hydra.run.dir=X``, so Hydra's files (``.hydra/``, ``r1gym.log``) and the run's are in one folder;
``r1gym eval`` picks ``stage=eval``; ``pipeline.stages=[a,b]`` (names) is the older spelling of
``pipeline.only=[a,b]``. A single ``train``/``eval`` run's config is checked (:func:`check_job`) before Hydra
makes its output folder, so a config error leaves no folder; a sweep's jobs are checked in the job, before
they write anything of their own.

Plugins' config folders go on Hydra's search path through a Hydra ``SearchPathPlugin``
(:class:`PluginConfigDirs`), after r1gym's own ``conf/`` and before the entries of a user's own
``hydra.searchpath``, which therefore no longer collides with them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import DictConfig, OmegaConf, open_dict

from r1gym.core.config import CONFIG_MODULE, register_configs, resume_overrides
from r1gym.core.jsonl import atomic_write_text

if TYPE_CHECKING:
    from r1gym.core.plugins import PluginHost

#: the subcommands that are Hydra applications, and their primary configs (in conf/)
CONFIG_NAMES = {"train": "config", "eval": "config", "pipeline": "pipeline_app"}

_config_dirs: ContextVar[tuple[str, ...]] = ContextVar("r1gym_plugin_config_dirs", default=())


class PluginConfigDirs(SearchPathPlugin):
    """Puts the plugins' config folders (hook ``r1gym_register_config_dirs``) on Hydra's search path.

    Hydra builds the search path once per application (and :func:`r1gym.core.config.compose` once per
    composition) and asks every registered ``SearchPathPlugin`` to add to it; the folders are those of the
    plugin host in use, handed over by :func:`plugin_config_dirs` for the duration of that call."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        for path in _config_dirs.get():
            search_path.append(provider="r1gym-plugin", path=path)


@contextlib.contextmanager
def plugin_config_dirs(config_dirs: Sequence[str]) -> Iterator[None]:
    """While inside, Hydra's search paths get these plugin config folders (see :class:`PluginConfigDirs`)."""
    token = _config_dirs.set(tuple(config_dirs))
    try:
        yield
    finally:
        _config_dirs.reset(token)


def check_runnable(cfg: Any) -> None:
    """A single run's config that cannot run: values left ``???``, or a ``stage.kind`` no runner has."""
    from r1gym.core.stages import RUNNERS

    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith("hydra."))
    if missing:
        raise ValueError(f"config values left unset (???): {', '.join(missing)}; set them, e.g. {missing[0]}=...")
    if cfg.stage.kind not in RUNNERS:
        raise ValueError(f"stage.kind={cfg.stage.kind!r} is not a stage kind; known: {', '.join(RUNNERS)}")


def check_job(command: str, cfg: Any, host: PluginHost | None) -> None:
    """Everything about a ``train``/``eval`` job's config that can be known before anything is written or
    loaded: :func:`check_runnable`, ``r1gym eval`` given an eval stage, every name and parameter
    (:func:`r1gym.core.validate.check_config`, all problems in one error), and for ``resume=`` a checkpoint to
    continue from (else the failed resume would already have replaced the run's ``overrides.txt``)."""
    from r1gym.core.checkpoint import resumable_checkpoint
    from r1gym.core.validate import check_config

    check_runnable(cfg)
    if command == "eval" and cfg.stage.kind != "eval":
        raise ValueError(f"r1gym eval runs stage.kind=eval stages; stage={cfg.stage.name} is kind {cfg.stage.kind!r}")
    check_config(cfg, host)
    if cfg.get("resume") and cfg.stage.kind != "eval":
        resumable_checkpoint(Path(cfg.run_dir or cfg.resume))


def transformers_quiet() -> None:
    """No transformers progress bars: r1gym's own progress is the one to watch."""
    import transformers

    transformers.logging.disable_progress_bar()


def _start_run(command: str, cfg: Any, host: PluginHost | None) -> Path:
    """The run folder (``run_dir``, else Hydra's output folder) with ``overrides.txt`` and ``config.yaml``,
    written only after :func:`check_job` passed. A single run was checked before Hydra made the folder
    (:func:`_check_single_run`); a sweep's job is checked here, in the job itself (Hydra turns a callback's
    exception into a warning, so a callback could not stop it), and its folder keeps only Hydra's record."""
    from hydra.core.hydra_config import HydraConfig

    check_job(command, cfg, host)
    hydra_cfg = HydraConfig.get()
    run_dir = Path(cfg.run_dir or hydra_cfg.runtime.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.run_dir = str(run_dir)
    overrides = [o for o in hydra_cfg.overrides.task if not o.startswith("resume=")]
    atomic_write_text(run_dir / "overrides.txt", "".join(f"{o}\n" for o in overrides))  # what resume= reads
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    return run_dir


def _train(cfg: Any, host: PluginHost | None) -> dict[str, Any]:
    """Run one stage (``stage=...``; GRPO by default) in its run folder."""
    from r1gym.core.distributed import shutdown
    from r1gym.core.stages import run_stage

    transformers_quiet()  # our own progress bar is the one to watch
    run_dir = _start_run("train", cfg, host)
    summary = run_stage(cfg, run_dir, host=host)
    shutdown()  # ranks leave together (after a failure there is no barrier: the others fail on their own)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return summary
    for when in ("eval_start", "eval_end"):
        if when in summary:
            ev = summary[when]
            print(f"{when}: accuracy={ev.get('eval/accuracy', float('nan')):.3f} "
                  f"reward_mean={ev.get('eval/reward_mean', float('nan')):.3f} on {int(ev['eval/num_problems'])} held-out problems")
    print(f"run folder: {run_dir}")
    return summary


def _eval(cfg: Any, host: PluginHost | None) -> dict[str, Any]:
    from r1gym.core.stages import run_stage

    transformers_quiet()
    run_dir = _start_run("eval", cfg, host)
    summary = run_stage(cfg, run_dir, host=host)
    print(f"run folder: {run_dir}")
    return summary


def _pipeline(cfg: Any, host: PluginHost | None) -> str:
    from hydra.core.hydra_config import HydraConfig

    from r1gym.core.pipeline import run_pipeline

    transformers_quiet()
    hydra_cfg = HydraConfig.get()
    for_stages = [o for o in hydra_cfg.overrides.task if _key(o) != "pipeline" and not _key(o).startswith("pipeline.")]
    # every stage composes on this application's search path: the plugins' folders, -cd, hydra.searchpath
    dirs = [f"{s.schema}://{s.path}" for s in hydra_cfg.runtime.config_sources if s.provider not in ("hydra", "main", "schema")]
    run_dir = Path(cfg.pipeline.run_dir or hydra_cfg.runtime.output_dir)
    run_dir = run_pipeline(cfg.pipeline, for_stages, run_dir, config_dirs=dirs, host=host)
    print(f"run folder: {run_dir}")
    return str(run_dir)


@dataclass(frozen=True)
class Job:
    """The task function Hydra runs once per job. Launchers that run jobs in other processes (joblib,
    submitit) pickle it: it travels as its command alone, and there the job uses that process's own plugin
    host (what it needs of the caller's, its config folders, is in the job's Hydra config,
    ``hydra.runtime.config_sources``). In the calling process (a single run, the basic launcher) the job
    uses ``host``, the one :func:`run` was given."""

    command: str
    host: PluginHost | None = field(default=None, compare=False, repr=False)

    def __call__(self, cfg: DictConfig) -> Any:
        return _JOBS[self.command](cfg, self.host)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return Job, (self.command,)


_JOBS = {"train": _train, "eval": _eval, "pipeline": _pipeline}


def _key(override: str) -> str:
    """The key (or group) an override sets: ``+a.b=1`` -> ``a.b``, ``algo@x=y`` -> ``algo``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_override(override).key_or_group


def prepare(command: str, overrides: Sequence[str], *, multirun: bool) -> list[str]:
    """The overrides Hydra is given for ``r1gym <command> OVERRIDES`` (the rules in the module docstring)."""
    overrides = list(overrides)
    keys = [_key(o) for o in overrides]
    if command != "train" and "resume" in keys:
        raise ValueError(f"r1gym {command} takes no resume=; " + (
            "evaluate a run with eval.checkpoint=RUN_DIR" if command == "eval"
            else "run the same command with pipeline.run_dir=RUN to resume a pipeline (finished stages are skipped)"))
    if command == "eval" and "stage" not in keys:
        overrides.insert(0, "stage=eval")
    if command == "pipeline":
        for i, (o, k) in enumerate(zip(overrides, keys)):
            value = o.split("=", 1)[-1]
            if k == "pipeline" and value.endswith((".yaml", ".yml")):
                raise ValueError(f"pipeline={value}: pipeline= takes a name from a config folder's pipeline/ group; "
                                 "put the file at DIR/pipeline/NAME.yaml and run with -cd DIR pipeline=NAME")
            if k == "pipeline.stages" and re.fullmatch(r"\[[\w\-, ]*\]", value):
                overrides[i] = f"pipeline.only={value}"
    overrides, resume = resume_overrides(overrides)
    if resume and multirun:
        raise ValueError("resume= continues one run; it takes no -m/--multirun")
    run_dir_key = "pipeline.run_dir" if command == "pipeline" else "run_dir"
    given = [o for o in overrides if _key(o) == run_dir_key]
    if given and not any(_key(o) == "hydra.run.dir" for o in overrides):
        value = given[-1].split("=", 1)[1]
        if multirun and "," not in value:
            raise ValueError(f"{run_dir_key}={value} with -m would put every job of the sweep in one folder; leave it "
                             "out (each job gets hydra.sweep.dir/hydra.sweep.subdir) or sweep it as well")
        overrides.append(f"hydra.run.dir={value}")
    return overrides


@contextlib.contextmanager
def _logging_restored() -> Iterator[None]:
    """Hydra configures logging for its jobs (hydra.job_logging): give the caller its own back afterwards,
    so that calling the CLI in-process (tests, notebooks) leaves no handler on a run's log file behind."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {n: logging.getLogger(n).level for n in ("r1gym", "hydra")}
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            if handler not in saved[0]:
                root.removeHandler(handler)
                handler.close()
        for handler in saved[0]:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(saved[1])
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _errors_raised() -> Iterator[None]:
    """Hydra's ``run_and_report`` prints an error and exits 1 unless ``HYDRA_FULL_ERROR=1``: with it, the
    exception reaches :func:`r1gym.core.cli.main`, which reports it the way every r1gym command does
    (``r1gym: error: ...`` or ``r1gym: config error: ...`` with Hydra's message, exit status 2)."""
    before = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ["HYDRA_FULL_ERROR"]
        else:
            os.environ["HYDRA_FULL_ERROR"] = before


def _check_single_run(command: str, args: Any, host: PluginHost) -> None:
    """Check a single run's config (:func:`check_job`) before ``_run_hydra``: Hydra makes the job's output
    folder (``.hydra/``, ``r1gym.log``) before it calls the job, and a run that cannot start should leave no
    folder behind. The config is composed as Hydra will compose it (same search path: ``-cp``, ``-cd``, the
    plugins' folders, ``hydra.searchpath``; same primary config, overrides and loader), once more: 0.2-0.4 s
    measured on a busy 2-core machine, against a one-step run's 6-9 s. Left to the job (which checks again in
    any case): overrides that sweep (Hydra refuses or runs them as a sweep, ``hydra.mode=MULTIRUN``) and a
    ``-cd`` that is no folder (Hydra reports it)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_automatic_config_search_path, detect_calling_file_or_module_from_task_function
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    if any(o.is_sweep_override() for o in OverridesParser.create().parse_overrides(args.overrides)):
        return
    if args.config_dir is not None and not os.path.isdir(args.config_dir):
        return
    calling_file, calling_module = detect_calling_file_or_module_from_task_function(Job(command))
    search_path = create_automatic_config_search_path(calling_file, calling_module,
                                                      args.config_path or f"pkg://{CONFIG_MODULE}")
    if args.config_dir is not None:  # as _run_hydra adds it
        search_path.prepend(provider="command-line", path=f"file://{os.path.abspath(args.config_dir)}",
                            anchor=SearchPathQuery(provider="schema"))
    cfg = ConfigLoaderImpl(config_search_path=search_path).load_configuration(
        config_name=args.config_name or CONFIG_NAMES[command], overrides=list(args.overrides),
        run_mode=RunMode.RUN, from_shell=True)
    if cfg.hydra.mode == RunMode.MULTIRUN:
        return
    with open_dict(cfg):
        del cfg["hydra"]
    check_job(command, cfg, host)


def run(command: str, argv: Sequence[str], *, host: PluginHost, verbose: bool = False) -> int:
    """Run ``r1gym <command> ARGV`` (``train``, ``eval``, ``pipeline``) as Hydra runs an application; returns
    the exit status. A config or run error is raised, for the caller to report (:func:`_errors_raised`)."""
    from hydra import version
    from hydra._internal.utils import _run_hydra, get_args_parser

    parser = get_args_parser()
    parser.prog = f"r1gym {command}"
    args = parser.parse_args(list(argv))
    if not args.shell_completion:
        args.overrides = prepare(command, args.overrides, multirun=args.multirun)
    if verbose:
        args.overrides.append("hydra.verbose=r1gym")
    version.setbase(None)  # Hydra 1.3's defaults, as @hydra.main(version_base=None)
    register_configs()
    with plugin_config_dirs(host.config_dirs), _logging_restored(), _errors_raised():
        if command != "pipeline" and not (args.multirun or args.cfg or args.info or args.shell_completion
                                          or args.help or args.hydra_help):
            _check_single_run(command, args, host)
        try:
            _run_hydra(args=args, args_parser=parser, task_function=Job(command, host),
                       config_path=f"pkg://{CONFIG_MODULE}", config_name=CONFIG_NAMES[command])
        except SystemExit as exc:  # Hydra exits after --help and --hydra-help
            return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return 0


def complete(argv: Sequence[str], *, host: PluginHost, commands: Sequence[str]) -> int:
    """``r1gym -sc ...``. The bash script that ``r1gym train -sc install=bash`` prints asks ``r1gym -sc
    query=bash`` with the line typed so far in ``COMP_LINE``: after ``r1gym train`` (``eval``, ``pipeline``)
    Hydra completes that application's overrides (the line given to it without the subcommand); before it,
    the subcommands are offered. ``install``/``uninstall`` are ``r1gym train``'s."""
    if not any(a.startswith("query=") for a in argv):
        return run("train", ["-sc", *argv], host=host)
    line = os.environ.get("COMP_LINE", "")
    m = re.match(r"\s*(\S+)(?:\s+(\S+))?(\s.*)?$", line)
    if m and m.group(2) in CONFIG_NAMES and m.group(3) is not None:
        os.environ["COMP_LINE"] = m.group(1) + m.group(3)
        return run(m.group(2), ["-sc", *argv], host=host)
    word = (m.group(2) or "") if m and not line.endswith(" ") else ""
    print(" ".join(c for c in commands if c.startswith(word)))
    return 0
