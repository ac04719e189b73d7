"""``r1gym pipeline``: the DeepSeek-R1 recipe as a sequence of stages, each its own composed config.

A pipeline is an option of the ``pipeline`` config group (``conf/pipeline/<name>.yaml``, or ``pipeline/`` in a
plugin's config folder or in a folder given with ``-cd``), typed by
:class:`r1gym.core.config.PipelineConfig`, so a misspelled key fails when Hydra composes it::

    name: r1
    common: [env=arithmetic]            # overrides given to every stage
    stages:
      - {name: r1_zero, stage: r1_zero, overrides: [trainer.max_steps=50]}
      - {name: cold_start, stage: cold_start, inputs: {sample.model: r1_zero.checkpoint}}
      - {name: sft, stage: sft, inputs: {sft.data: [rejection_sampling.data]}}
    eval: {after: [r1_zero, sft], overrides: [eval.num_problems=64]}

``inputs`` wire a config key to an earlier stage's output (``<stage>.<output>``: ``checkpoint``, ``data``;
a list makes a list). Every stage composes ``stage=<stage>`` + ``common`` + its ``overrides`` + the command
line's overrides + its inputs (:func:`r1gym.core.config.load_run_config`, the same composition as
``r1gym train``, plugins' config folders included, so a plugin's stage options work), and runs in
``<run>/<k>-<name>/`` through :func:`r1gym.core.stages.run_stage`. ``eval.after`` stages are then evaluated
(``stage=eval`` on their checkpoint) in ``<k>-<name>/eval``.

The run folder's ``pipeline.json`` is the manifest: per stage its status (``running``, ``finished``,
``failed``), folder, config overrides, outputs and metrics. Running the same command with
``pipeline.run_dir=<run>`` again skips finished stages and resumes an interrupted one (GRPO and SFT from their
last checkpoint, data generation after its last finished chunk). ``pipeline.only=[a,b]`` (or
``pipeline.stages=[a,b]``) runs a subset (their inputs must be finished in the manifest). At the end
:func:`r1gym.core.report.write_report` writes ``report.md`` and its plots.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r1gym.core.jsonl import atomic_write_text

if TYPE_CHECKING:
    from r1gym.core.plugins import PluginHost

log = logging.getLogger(__name__)

MANIFEST = "pipeline.json"


def load_pipeline(name: str, *, config_dirs: Sequence[str] = ()) -> dict[str, Any]:
    """The pipeline option ``name`` as Hydra composes it for ``r1gym pipeline pipeline=<name>`` (typed,
    checked by :func:`check_pipeline`), as plain data."""
    from r1gym.core.config import compose

    spec = compose([f"pipeline={name}"], config_dirs=config_dirs, config_name="pipeline_app").pipeline
    return check_pipeline(spec, config_dirs=config_dirs)


def check_pipeline(spec: Any, *, config_dirs: Sequence[str] = ()) -> dict[str, Any]:
    """The composed ``pipeline`` node as plain data, after checks the schema cannot make: stage names given
    and distinct, every ``stage`` an option of the ``stage`` group, ``eval.after`` and ``only`` naming stages."""
    from omegaconf import OmegaConf

    from r1gym.core.config import group_options

    plain = OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else dict(spec)
    names = [s["name"] for s in plain["stages"]]
    where = f"pipeline {plain['name']!r}"
    if not names or len(set(names)) != len(names):
        raise ValueError(f"{where}: 'stages' must be a non-empty list of stages with distinct names, got {names}")
    known = group_options("stage", config_dirs=config_dirs)
    for s in plain["stages"]:
        if s["stage"] not in known:
            raise ValueError(f"{where}: stage {s['name']!r} runs stage={s['stage']}, which is not an option of the "
                             f"stage group; known: {', '.join(known)}")
    for key, chosen in (("eval.after", plain["eval"]["after"]), ("only", plain.get("only") or [])):
        bad = [x for x in chosen if x not in names]
        if bad:
            raise ValueError(f"pipeline.{key} names {bad} that {where} does not have; it has {', '.join(names)}")
    return plain


def _wire(value: Any, manifest: dict[str, Any], stage: str) -> Any:
    """``"<stage>.<output>"`` (or a list of them) as the path an earlier stage wrote."""
    if isinstance(value, list):
        return [_wire(v, manifest, stage) for v in value]
    source, _, output = str(value).partition(".")
    done = manifest["stages"].get(source, {})
    if done.get("status") != "finished":
        raise ValueError(f"stage {stage!r} needs {value!r}, but stage {source!r} has not finished in this run "
                         f"(status: {done.get('status', 'not run')}); run it first or include it in pipeline.only")
    outputs = done.get("outputs", {})
    if outputs.get(output) is None:
        raise ValueError(f"stage {stage!r} needs {value!r}, but {source!r} has no output {output!r} "
                         f"(it has: {', '.join(k for k, v in outputs.items() if v) or 'none'})")
    return outputs[output]


def _placeholder(value: Any, manifest: dict[str, Any], stage: str, coming: set[str]) -> Any:
    """What an input stands for in the check before the first stage runs: a stand-in of the same shape (a
    path, or a list of them) naming it when an earlier stage of this run (``coming``) will write it, else the
    output the manifest has (:func:`_wire`, which says why when there is none)."""
    if isinstance(value, list):
        return [_placeholder(v, manifest, stage, coming) for v in value]
    if str(value).partition(".")[0] in coming:
        return f"<{value}>"
    return _wire(value, manifest, stage)


def _stage_overrides(spec: dict[str, Any], st: dict[str, Any], rest: Sequence[str], inputs: dict[str, Any]) -> list[str]:
    """A stage's overrides: ``stage=``, the pipeline's ``common``, its own, the command line's, its inputs."""
    return [f"stage={st['stage']}", *spec.get("common", []), *st.get("overrides", []), *rest,
            *(_override(key, value) for key, value in inputs.items())]


def _eval_overrides(spec: dict[str, Any], st: dict[str, Any], rest: Sequence[str], checkpoint: Any) -> list[str]:
    """The overrides of the evaluation after a stage (``eval.after``) of its ``checkpoint``."""
    return ["stage=eval", *spec.get("common", []), *st.get("overrides", []), *rest,
            *(spec.get("eval") or {}).get("overrides", []), _override("eval.checkpoint", checkpoint)]


def check_stages(spec: dict[str, Any], rest: Sequence[str], run_dir: Path, manifest: dict[str, Any],
                 compose_stage: Any, host: PluginHost | None = None) -> None:
    """Check every stage this run will run, and the evaluations after them, before the first one starts
    (issue 17: a typo in the last stage must not cost the stages before it): each is composed as it will run
    and checked for values left ``???`` and by :func:`r1gym.core.validate.check_configs`; every problem of
    every stage comes in one :class:`~r1gym.core.validate.ConfigCheckError`.

    Inputs from stages that have not run yet are not known: their keys are set to a stand-in naming the
    input (``<r1_zero.checkpoint>``) rather than left out, so that an input's key is still composed against
    the schema, and nothing downstream is ``???`` merely because an earlier stage has not run. The check reads
    names and parameters, never whether a path exists, so the stand-in cannot hide a problem it looks for.
    A stage that resumes is composed from its saved overrides (``resume=``), as it will run."""
    from omegaconf import OmegaConf

    from r1gym.core.validate import ConfigCheckError, check_configs

    configs, coming = [], set()
    for k, st in _chosen(spec):
        name, entry = st["name"], manifest["stages"].get(st["name"], {})
        stage_dir = run_dir / f"{k}-{name}"
        checkpoint: Any = (entry.get("outputs") or {}).get("checkpoint")
        if entry.get("status") != "finished":
            if (stage_dir / "config.yaml").exists():
                overrides = [f"resume={stage_dir}"]
            else:
                inputs = {key: _placeholder(v, manifest, name, coming) for key, v in (st.get("inputs") or {}).items()}
                overrides = [*_stage_overrides(spec, st, rest, inputs), _override("run_dir", str(stage_dir))]
            configs.append((f"stage {name}", compose_stage(overrides)[0]))
            checkpoint, coming = f"<{name}.checkpoint>", coming | {name}
        if name in _evaluated(spec) and "eval" not in entry and checkpoint:
            configs.append((f"stage {name} (eval)", compose_stage(_eval_overrides(spec, st, rest, checkpoint))[0]))
    unset = [(f"{name}: {key}", f"left unset (???); set it, e.g. {key}=...")
             for name, cfg in configs for key in sorted(OmegaConf.missing_keys(cfg))]
    try:
        check_configs(configs, host)
    except ConfigCheckError as exc:
        unset += exc.problems
    if unset:
        raise ConfigCheckError(unset)


def _chosen(spec: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """The stages this run runs (``pipeline.only``, else all), with their 1-based positions."""
    only = spec.get("only") or [s["name"] for s in spec["stages"]]
    return [(k, st) for k, st in enumerate(spec["stages"], start=1) if st["name"] in only]


def _evaluated(spec: dict[str, Any]) -> set[str]:
    return set((spec.get("eval") or {}).get("after", []))


def _override(key: str, value: Any) -> str:
    if isinstance(value, list):
        return f"{key}=[" + ",".join(json.dumps(str(v)) for v in value) + "]"
    return f"{key}={json.dumps(str(value))}"


def _load_manifest(path: Path) -> dict[str, Any]:
    """The pipeline's manifest (written atomically, so an unreadable one was damaged, not cut by a kill)."""
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); it records which stages finished: restore it, or "
                         "remove it to run every stage again") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("stages"), dict):
        raise ValueError(f"{path} is not a pipeline manifest (no 'stages' object); restore it or remove it")
    return manifest


def _save(run_dir: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(run_dir / MANIFEST, json.dumps(manifest, indent=2, default=str))


def run_pipeline(spec: Any, overrides: Sequence[str], run_dir: Path, *, config_dirs: Sequence[str] = (),
                 host: PluginHost | None = None) -> Path:
    """Run (or resume) the pipeline ``spec`` (the composed ``pipeline`` node) in ``run_dir``; returns it.
    ``overrides``: the command line's overrides for every stage; ``config_dirs``: the plugins' config folders;
    ``host``: the plugins the stages are checked against and run with (default: the process-wide host).
    Every stage is checked (:func:`check_stages`) before the first one runs or the manifest is written."""
    from functools import partial

    from r1gym.core.config import load_run_config
    from r1gym.core.report import write_report
    from r1gym.core.stages import run_stage

    spec = check_pipeline(spec, config_dirs=config_dirs)
    rest = list(overrides)
    compose_stage = partial(load_run_config, config_dirs=config_dirs)
    run_stage = partial(run_stage, host=host)
    manifest_path = run_dir / MANIFEST
    manifest = _load_manifest(manifest_path) if manifest_path.exists() else {
        "pipeline": spec["name"], "created": time.strftime("%Y-%m-%d %H:%M:%S"), "stages": {}}
    check_stages(spec, rest, run_dir, manifest, compose_stage, host)
    run_dir.mkdir(parents=True, exist_ok=True)
    names = [s["name"] for s in spec["stages"]]
    for k, st in _chosen(spec):
        name = st["name"]
        entry = manifest["stages"].get(name, {})
        stage_dir = run_dir / f"{k}-{name}"
        if entry.get("status") != "finished":
            inputs = {key: _wire(v, manifest, name) for key, v in (st.get("inputs") or {}).items()}
            stage_overrides = _stage_overrides(spec, st, rest, inputs)
            resuming = (stage_dir / "config.yaml").exists()
            entry = {"status": "running", "run_dir": str(stage_dir), "stage": st["stage"], "overrides": stage_overrides,
                     "started": time.strftime("%Y-%m-%d %H:%M:%S"), "resumed": resuming}
            manifest["stages"][name] = entry
            _save(run_dir, manifest)
            log.info("pipeline %s: stage %d/%d %s (%s)%s", spec["name"], k, len(names), name, st["stage"],
                     " resumed" if resuming else "")
            try:
                summary = _run_one(stage_dir, stage_overrides, resuming, compose_stage, run_stage)
            except BaseException as exc:
                entry.update(status="failed", error=f"{type(exc).__name__}: {exc}")
                _save(run_dir, manifest)
                raise
            entry.update(status="finished", finished=time.strftime("%Y-%m-%d %H:%M:%S"),
                         outputs=summary.get("outputs", {}),
                         metrics={k2: v for k2, v in summary.items() if k2 not in ("outputs", "stage", "kind", "run_dir")})
            _save(run_dir, manifest)
        if name in _evaluated(spec) and "eval" not in entry and entry.get("outputs", {}).get("checkpoint"):
            ev_overrides = _eval_overrides(spec, st, rest, entry["outputs"]["checkpoint"])
            ev_dir = stage_dir / "eval"
            summary = _run_one(ev_dir, ev_overrides, False, compose_stage, run_stage)
            entry["eval"] = summary.get("results", {})
            _save(run_dir, manifest)
    write_report(run_dir, manifest)
    return run_dir


def _run_one(stage_dir: Path, overrides: list[str], resuming: bool, compose_stage: Any, run_stage: Any) -> dict:
    """Compose (or reload, to resume) one stage's config and run it in ``stage_dir``."""
    from omegaconf import OmegaConf

    if resuming:
        cfg, _, _ = compose_stage([f"resume={stage_dir}"])
    else:
        cfg, _, _ = compose_stage([*overrides, _override("run_dir", str(stage_dir))])
        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:
            raise ValueError(f"config values left unset (???): {', '.join(missing)}")
        stage_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(stage_dir / "overrides.txt", "\n".join(overrides) + "\n")
        atomic_write_text(stage_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))  # last: it marks a resumable stage
    return run_stage(cfg, stage_dir)
