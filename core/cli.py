"""The ``r1gym`` command line.

    r1gym train [HYDRA OVERRIDES ...]     GRPO training, e.g. r1gym train experiment=demo trainer.max_steps=5
    r1gym train -m KEY=A,B ...            a Hydra sweep (train, eval and pipeline are Hydra applications:
                                          --cfg job, --info, -cd DIR, -sc install=bash; r1gym.core.hydra_app)
    r1gym train resume=RUN_DIR            continue a run from its last checkpoint
    r1gym eval [HYDRA OVERRIDES ...]      pass@1 over k samples and cons@k
    r1gym pipeline pipeline=NAME ...      the stages of a pipeline in order, each its own run
    r1gym config [--check] [OVERRIDES]    print the composed config (--check: every name and parameter)
    r1gym plugins                         every plugin, its version, what it registers (or why it failed)
    r1gym envs                            registered environment ids
    r1gym env check ID [--episodes N]     gymnasium's env checker + a few episodes with a random policy
    r1gym data check [OVERRIDES ...]      check every reference answer (or solution) of the env's data
    r1gym score REWARD --input IN.jsonl   apply a reward to records (completion + task fields), e.g.
          [--output OUT.jsonl] [--param k=v ...]   r1gym score math_accuracy --input samples.jsonl
    r1gym report RUN [--out DIR]          report.md (+ plots) and a self-contained report.html for any run folder

Plugins add commands through the hook ``r1gym_register_cli_commands`` (the code plugin: ``r1gym sandbox run``,
``r1gym sandbox check``); ``r1gym --help`` lists them with the built-in ones. Every command reads the plugin
host :func:`main` was given (by default the process-wide one), so a test can hand it a host of its own.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r1gym.core.config import load_run_config
from r1gym.core.registry import UnknownNameError

if TYPE_CHECKING:
    from r1gym.core.plugins import CliCommand, PluginHost

log = logging.getLogger("r1gym")

#: subcommands that run as Hydra applications (r1gym.core.hydra_app): -m, --cfg, --info, -cd, ... work there
HYDRA_COMMANDS = ("train", "eval", "pipeline")


def _setup_logging(verbose: bool) -> None:
    """Log lines through rich on a console that is not squeezed to 80 columns when stderr is a file or a pipe
    (:func:`r1gym.core.loggers.wide_console`), so a line in a log file stays one line."""
    from rich.logging import RichHandler

    from r1gym.core.loggers import wide_console

    handler = RichHandler(console=wide_console(stderr=True), show_path=False, rich_tracebacks=False)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s", handlers=[handler])
    logging.getLogger("r1gym").setLevel(logging.DEBUG if verbose else logging.INFO)


def cmd_config(overrides: Sequence[str], host: PluginHost, check: bool = False) -> int:
    """Print the composed config (what ``r1gym train --cfg job`` prints; ``resume=RUN`` shows the resumed one);
    with ``check``, also check every name and parameter in it against what the plugins register, as every
    run does before any model loads (:func:`r1gym.core.validate.check_config`)."""
    from omegaconf import OmegaConf

    cfg, _, _ = load_run_config(overrides, host=host)
    print(OmegaConf.to_yaml(cfg))
    if check:
        from r1gym.core.validate import check_config

        check_config(cfg, host)
        print("config check: every name and parameter is known", file=sys.stderr)
    return 0


def cmd_plugins(host: PluginHost) -> int:
    from rich.console import Console
    from rich.table import Table

    from r1gym.core.hookspecs import API_VERSION

    table = Table(title=f"r1gym plugins (plugin API {API_VERSION})")
    for col in ("plugin", "version", "API", "source", "registers"):
        table.add_column(col)
    for info in host.plugins.values():
        what = "; ".join(f"{k}: {', '.join(v)}" for k, v in info.contributes.items()) or "-"
        if info.error:
            what = f"[red]FAILED: {info.error}[/]"
        table.add_row(info.name, info.version, info.api or "-", info.source, what)
    Console(width=200).print(table)
    return 1 if host.failed else 0


def cmd_envs(host: PluginHost) -> int:
    for env_id in host.envs:
        e = host.envs.entries[env_id]
        print(f"{env_id:32s} {e.description}  [{e.plugin}]")
    return 0


def cmd_env_check(env_id: str, episodes: int, seed: int, host: PluginHost) -> int:
    import warnings

    from gymnasium.utils.env_checker import check_env

    from r1gym.core.env_factory import make_env

    # the forms env.id takes: a registered id (unknown: the known ids, did-you-mean) or an entry point
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(make_env(env_id, host=host).unwrapped)
    for w in caught:
        print(f"warning: {w.message}")
    print(f"{env_id}: gymnasium check_env passed")
    env = make_env(env_id, host=host)
    env.action_space.seed(seed)
    for i in range(episodes):
        obs, info = env.reset(seed=seed + i)
        total, done, turns = 0.0, False, 0
        while not done:
            obs, r, term, trunc, step_info = env.step(env.action_space.sample())
            total, done, turns = total + r, term or trunc, turns + 1
        print(f"episode {i}: task={info.get('task_id')} turns={turns} reward={total:.3f} "
              f"components={step_info.get('rewards', {})} terminated={term} truncated={trunc}")
    return 0


def cmd_data_check(overrides: Sequence[str], eval_split: bool, jobs: int | None, host: PluginHost) -> int:
    """Check each task's reference answer with the env's first reward (its accuracy reward): a reference that
    cannot be scored, or that does not score 1.0, is listed with the reason. Exit 1 if any.

    By default the reference is scored as the completion ``<answer>{reference}</answer>``. A reward function
    can check references its own way by carrying ``check_reference(reference, **kwargs)`` (called with the
    keyword arguments the reward itself would get: the task's fields and the reward's parameters),
    which returns ``None`` for a reference that passes and otherwise the reason (``code_tests`` runs the
    reference program against every test and names the first failing test, its verdict and stderr)."""
    import inspect
    from concurrent.futures import ThreadPoolExecutor

    from r1gym.core.env_factory import env_kwargs
    from r1gym.core.rewards import RewardSet, Unscorable
    from r1gym.envs.base import resolve_rewards, resolve_source

    cfg, _, _ = load_run_config(overrides, host=host)
    kwargs = env_kwargs(cfg.env, eval_split=eval_split, host=host)
    source = resolve_source(kwargs["source"], host)
    first = resolve_rewards(kwargs["rewards"], host).components[0]
    check = RewardSet([first])
    explain = getattr(first.fn, "check_reference", None)
    takes = set(inspect.signature(first.fn).parameters) - {"completion"}  # the reward's own keyword arguments

    def one(index: int) -> tuple[str, Any, str] | None:
        task = source[index]
        if "answer" not in task.fields:
            raise ValueError(f"task {task.id!r} has no 'answer' field (fields: {sorted(task.fields)}); "
                             "`r1gym data check` checks reference answers")
        gold = task.fields["answer"]
        if explain is not None:
            given = {k: v for k, v in {**task.fields, **first.params}.items() if k in takes}
            try:
                reason = explain(gold, **given)
            except Unscorable as exc:
                reason = f"cannot be scored: {exc}"
            name = task.meta.get("name")
            return None if reason is None else (f"{task.id} ({name})" if name else task.id, None, reason)
        outcome = check.score(f"<think> check </think> <answer> {gold} </answer>", task.fields)
        value = outcome.components[first.name]
        if value is None:
            return task.id, gold, f"cannot be scored: {outcome.unscorable[first.name]}"
        if value < 1.0:
            return task.id, gold, f"does not match itself ({first.name} = {value:g})"
        return None

    with ThreadPoolExecutor(max_workers=jobs or 4) as ex:
        bad = [r for r in ex.map(one, range(len(source))) if r is not None]
    split = "eval" if eval_split else "train"
    what = "reference solutions run against their tests" if explain is not None else "reference answers checked"
    print(f"{cfg.env.id} ({split} data, {len(source)} problems): {what} with {first.name!r}: "
          f"{len(source) - len(bad)} ok, {len(bad)} with a problem")
    for task_id, gold, reason in bad:
        print(f"  {task_id}: {reason}" if gold is None else f"  {task_id}: {gold!r}: {reason}")
    return 1 if bad else 0


def _param(text: str) -> tuple[str, Any]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--param takes key=value, got {text!r}")
    return key.strip(), yaml.safe_load(value)


def cmd_score(reward: str, input_path: str, output_path: str | None, params: Sequence[str], jobs: int | None,
              host: PluginHost) -> int:
    """Apply a registered reward to JSONL records (``completion`` + the task's fields, e.g. ``answer``); write
    each record back with ``reward`` (null when it cannot be scored), ``reason`` and the grader's ``flags``
    (see :class:`r1gym.core.rewards.Graded`) when it raised any; counts on stderr."""
    from collections import Counter
    from concurrent.futures import ThreadPoolExecutor

    from r1gym.core.jsonl import iter_jsonl
    from r1gym.core.rewards import RewardComponent, RewardSet

    component = RewardComponent(reward, host.rewards.get(reward), 1.0, dict(_param(p) for p in params))
    scorer = RewardSet([component])
    records = []
    for lineno, record in iter_jsonl(input_path):
        if "completion" not in record:
            raise ValueError(f"{input_path}:{lineno}: each record needs a 'completion' field")
        records.append(record)

    def one(record: dict[str, Any]) -> dict[str, Any]:
        fields = {k: v for k, v in record.items() if k not in ("completion", "reward", "reason", "flags")}
        outcome = scorer.score(str(record["completion"]), fields)
        return {**record, "reward": outcome.components[reward], "reason": outcome.unscorable.get(reward),
                **({"flags": list(outcome.flags[reward])} if reward in outcome.flags else {})}

    with ThreadPoolExecutor(max_workers=jobs or 4) as ex:
        scored = list(ex.map(one, records))
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in scored)
    if output_path:
        Path(output_path).write_text(lines, encoding="utf-8")
    else:
        sys.stdout.write(lines)
    values = [r["reward"] for r in scored if r["reward"] is not None]
    reasons = Counter(r["reason"] for r in scored if r["reward"] is None)
    mean = f", mean {sum(values) / len(values):.4g}" if values else ""
    print(f"{reward}: {len(scored)} records, {len(values)} scored{mean}, {len(scored) - len(values)} cannot be scored",
          file=sys.stderr)
    for reason, n in reasons.most_common(10):
        print(f"  {n} x {reason}", file=sys.stderr)
    flagged = Counter(f for r in scored for f in r.get("flags", ()))
    if flagged:
        print("  flagged: " + ", ".join(f"{n} x {flag}" for flag, n in flagged.most_common()), file=sys.stderr)
    return 0


def _add_plugin_commands(sub: argparse._SubParsersAction, host: PluginHost) -> None:
    """Add the commands plugins registered (``"sandbox run"``: a group ``sandbox`` with ``run`` in it) beside
    the built-in ones; a command whose name a built-in command has is left out with a warning."""
    groups: dict[str, argparse._SubParsersAction] = {}
    builtin = set(sub.choices)
    by_group: dict[str, list[str]] = {}  # group -> its commands and the plugins they come from, for --help
    for name in host.cli_commands:
        words = name.split()
        by_group.setdefault(words[0], []).append(f"{' '.join(words[1:])} [{host.cli_commands.entries[name].plugin}]")
    for name in host.cli_commands:
        entry = host.cli_commands.entries[name]
        command: CliCommand = entry.obj
        *path, leaf = name.split()
        if (path[0] if path else leaf) in builtin:
            log.warning("plugin %r: command %r not added: r1gym has a built-in command %r (built-in: %s)",
                        entry.plugin, name, path[0] if path else leaf, ", ".join(sorted(builtin)))
            continue
        parent, prefix = sub, ""
        for word in path:
            prefix = f"{prefix} {word}".strip()
            if prefix not in groups:
                parser = parent.add_parser(word, help=f"{word} commands: {', '.join(by_group[path[0]])}")
                groups[prefix] = parser.add_subparsers(dest=f"_{prefix.replace(' ', '_')}_command", required=True)
            parent = groups[prefix]
        p = parent.add_parser(leaf, help=command.description, description=command.description)
        if command.arguments is not None:
            command.arguments(p)
        p.set_defaults(_plugin_command=command)


def _hydra_command(argv: Sequence[str]) -> tuple[bool, str | None, list[str]]:
    """``(verbose, command, rest)`` when ``argv`` is ``[-v] [--local_rank N] train|eval|pipeline|-sc REST``,
    the commands whose arguments Hydra parses; else ``(False, None, [])``."""
    verbose, i = False, 0
    while i < len(argv):
        if argv[i] in ("-v", "--verbose"):
            verbose = True
        elif argv[i] in ("--local_rank", "--local-rank"):
            i += 1
        elif not argv[i].startswith(("--local_rank=", "--local-rank=")):
            break
        i += 1
    if i < len(argv) and argv[i] in (*HYDRA_COMMANDS, "-sc", "--shell-completion"):
        return verbose, argv[i], list(argv[i + 1:])
    return False, None, []


def main(argv: Sequence[str] | None = None, *, host: PluginHost | None = None) -> int:
    """Run the ``r1gym`` command line; ``host``: the plugins to use (default: the process-wide host)."""
    from r1gym.core.plugins import default_host

    host = host or default_host()
    parser = argparse.ArgumentParser(prog="r1gym", description="GRPO training of reasoning LLMs, the DeepSeek-R1 way.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    # the `deepspeed` launcher passes --local_rank=N to every process; the rank is read from the environment
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    # the Hydra applications (r1gym.core.hydra_app): listed here for --help; Hydra parses their arguments
    sub.add_parser("train", help="one run, e.g. experiment=demo trainer.max_steps=5; -m a sweep; --help: Hydra's")
    sub.add_parser("eval", help="pass@1 over k samples and cons@k on held-out data or files (Hydra overrides)")
    sub.add_parser("pipeline", help="the stages of a pipeline in order (pipeline=r1 | r1_tiny | a plugin's)")
    p = sub.add_parser("serve", help="serve a model as an OpenAI-compatible API (/v1/chat/completions) on localhost")
    p.add_argument("model", help="a built-in model (smollm2-135m), a model folder, a checkpoint or a run folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--name", default=None, help="the model id clients send (default: from the path)")
    p.add_argument("--max-tokens", type=int, default=2048, help="the largest max_tokens a request may ask for")
    p = sub.add_parser("config", help="print the composed config (as `r1gym train --cfg job`)")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--check", action="store_true",
                   help="also check every name and parameter (rewards, env kwargs, loggers, backends) before any model loads")
    sub.add_parser("plugins", help="list plugins and what they register")
    sub.add_parser("envs", help="list registered environment ids")
    p = sub.add_parser("env", help="environment tools")
    env_sub = p.add_subparsers(dest="env_command", required=True)
    c = env_sub.add_parser("check", help="run gymnasium's checker and a few random episodes")
    c.add_argument("env_id")
    c.add_argument("--episodes", type=int, default=3)
    c.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    c = data_sub.add_parser("check", help="check every reference answer (code: run each reference solution on its tests); list the ones that fail")
    c.add_argument("overrides", nargs="*", help="e.g. env=math env.kwargs.source.path=data/train.jsonl")
    c.add_argument("--eval", action="store_true", help="check the held-out data (env.eval_kwargs) instead")
    c.add_argument("--jobs", type=int, default=None, help="checks in flight at once (default 4)")
    p = sub.add_parser("score", help="apply a reward to JSONL records (completion + task fields)")
    p.add_argument("reward", help="a registered reward name (`r1gym plugins` lists them)")
    p.add_argument("--input", required=True, help="JSONL with a 'completion' and the task's fields per line")
    p.add_argument("--output", help="where to write the scored records (default: stdout)")
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="a reward parameter (YAML value)")
    p.add_argument("--jobs", type=int, default=None, help="records scored at once (default 4)")
    p = sub.add_parser("report", help="report.md (+ PNG plots) and a self-contained report.html for a run folder")
    p.add_argument("run_dir", help="the folder of a train, eval or pipeline run")
    p.add_argument("--out", default=None, help="where to write the report (default: the run folder)")
    p.add_argument("--samples", type=int, default=4, help="completions shown per step shown (default 4)")
    _add_plugin_commands(sub, host)
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose, command, rest = _hydra_command(argv)
    args = parser.parse_args(argv) if command is None else None
    if args is not None:  # for the Hydra applications, Hydra sets up logging (hydra.job_logging in conf/config.yaml)
        _setup_logging(args.verbose)
    try:
        if command is not None:  # Hydra parses the rest, as Hydra applications do (r1gym.core.hydra_app)
            from r1gym.core import hydra_app

            if command in ("-sc", "--shell-completion"):
                return hydra_app.complete(rest, host=host, commands=sorted(sub.choices))
            return hydra_app.run(command, rest, host=host, verbose=verbose)
        if getattr(args, "_plugin_command", None) is not None:
            return args._plugin_command.run(args, host)
        if args.command == "config":
            return cmd_config(args.overrides, host, check=args.check)
        if args.command == "serve":
            from r1gym.core.serve import serve

            serve(args.model, host=args.host, port=args.port, name=args.name, max_tokens_limit=args.max_tokens)
            return 0
        if args.command == "plugins":
            return cmd_plugins(host)
        if args.command == "envs":
            return cmd_envs(host)
        if args.command == "data":
            return cmd_data_check(args.overrides, args.eval, args.jobs, host)
        if args.command == "score":
            return cmd_score(args.reward, args.input, args.output, args.param, args.jobs, host)
        if args.command == "report":
            from r1gym.core.report import build_report

            print("\n".join(map(str, build_report(Path(args.run_dir), args.out and Path(args.out), samples=args.samples))))
            return 0
        return cmd_env_check(args.env_id, args.episodes, args.seed, host)
    except (UnknownNameError, FileNotFoundError, ValueError, TypeError, RuntimeError, ImportError) as exc:
        # an ImportError here is a missing optional dependency, and its message names the extra to install
        # (pip install 'r1gym[serve]', 'r1gym[smollm2]'); -v also logs the traceback
        log.debug("%s", type(exc).__name__, exc_info=exc)
        print(f"r1gym: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        if isinstance(exc, (HydraException, OmegaConfBaseException)):
            print(f"r1gym: config error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
