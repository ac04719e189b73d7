"""The ``r1gym`` command line.

    r1gym train [HYDRA OVERRIDES ...]     GRPO training, e.g. r1gym train experiment=demo trainer.max_steps=5
    r1gym train resume=RUN_DIR            continue a run from its last checkpoint
    r1gym config [OVERRIDES ...]          print the composed config
    r1gym plugins                         every plugin, its version, what it registers (or why it failed)
    r1gym envs                            registered environment ids
    r1gym env check ID [--episodes N]     gymnasium's env checker + a few episodes with a random policy
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from r1gym.core.registry import UnknownNameError

log = logging.getLogger("r1gym")


def _setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    handler = RichHandler(show_path=False, rich_tracebacks=False)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s", handlers=[handler])
    logging.getLogger("r1gym").setLevel(logging.DEBUG if verbose else logging.INFO)


def load_run_config(overrides: Sequence[str]) -> tuple[Any, Path, bool]:
    """Compose the config (or reload a run's saved one for ``resume=``); return it with the run folder."""
    from omegaconf import OmegaConf

    from r1gym.core.config import R1GymConfig, compose
    from r1gym.core.plugins import default_host

    resume = next((o.split("=", 1)[1] for o in overrides if o.startswith("resume=")), None)
    if resume:
        run_dir = Path(resume)
        saved = run_dir / "config.yaml"
        if not saved.exists():
            raise FileNotFoundError(f"resume={resume}: no config.yaml there; is it an r1gym run folder?")
        rest = [o for o in overrides if not o.startswith("resume=")]
        cfg = OmegaConf.merge(OmegaConf.structured(R1GymConfig), OmegaConf.load(saved), OmegaConf.from_dotlist(rest))
        cfg.resume = str(run_dir)
        return cfg, run_dir, True
    cfg = compose(overrides, config_dirs=default_host().config_dirs)
    run_dir = Path(cfg.run_dir) if cfg.run_dir else Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.stage.name}"
    return cfg, run_dir, False


def cmd_train(overrides: Sequence[str]) -> int:
    from omegaconf import OmegaConf

    import transformers

    from r1gym.core.grpo import GRPOTrainer

    transformers.logging.disable_progress_bar()  # our own progress bar is the one to watch
    cfg, run_dir, resuming = load_run_config(overrides)
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:  # before the run folder exists: a config with ??? left in it cannot run
        raise ValueError(f"config values left unset (???): {', '.join(missing)}; set them, e.g. {missing[0]}=...")
    if cfg.stage.kind != "grpo":
        raise ValueError(f"stage.kind={cfg.stage.kind!r} is not runnable by `r1gym train` yet; known: grpo")
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resuming:
        cfg.run_dir = str(run_dir)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        (run_dir / "overrides.txt").write_text("\n".join(overrides) + "\n")
    summary = GRPOTrainer(cfg, run_dir).train()
    manifest = {"stage": cfg.stage.name, "kind": cfg.stage.kind, **summary,
                "outputs": {"checkpoint": str(run_dir / "checkpoints" / "latest")}}
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    for when in ("eval_start", "eval_end"):
        if when in summary:
            ev = summary[when]
            print(f"{when}: accuracy={ev.get('eval/accuracy', float('nan')):.3f} "
                  f"reward_mean={ev.get('eval/reward_mean', float('nan')):.3f} on {int(ev['eval/num_problems'])} held-out problems")
    print(f"run folder: {run_dir}")
    return 0


def cmd_config(overrides: Sequence[str]) -> int:
    from omegaconf import OmegaConf

    cfg, _, _ = load_run_config(overrides)
    print(OmegaConf.to_yaml(cfg))
    return 0


def cmd_plugins() -> int:
    from rich.console import Console
    from rich.table import Table

    from r1gym.core.plugins import default_host

    host = default_host()
    table = Table(title="r1gym plugins")
    for col in ("plugin", "version", "source", "registers"):
        table.add_column(col)
    for info in host.plugins.values():
        what = "; ".join(f"{k}: {', '.join(v)}" for k, v in info.contributes.items()) or "-"
        if info.error:
            what = f"[red]FAILED: {info.error}[/]"
        table.add_row(info.name, info.version, info.source, what)
    Console(width=200).print(table)
    return 1 if host.failed else 0


def cmd_envs() -> int:
    from r1gym.core.plugins import default_host

    host = default_host()
    for env_id in host.envs:
        e = host.envs.entries[env_id]
        print(f"{env_id:32s} {e.description}  [{e.plugin}]")
    return 0


def cmd_env_check(env_id: str, episodes: int, seed: int) -> int:
    import warnings

    import gymnasium
    from gymnasium.utils.env_checker import check_env

    from r1gym.core.plugins import default_host

    host = default_host()
    if env_id not in host.envs:
        host.envs.get(env_id)  # raises with the known ids
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(gymnasium.make(env_id).unwrapped)
    for w in caught:
        print(f"warning: {w.message}")
    print(f"{env_id}: gymnasium check_env passed")
    env = gymnasium.make(env_id)
    env.action_space.seed(seed)
    for i in range(episodes):
        obs, info = env.reset(seed=seed + i)
        total, done, turns = 0.0, False, 0
        while not done:
            obs, r, term, trunc, step_info = env.step(env.action_space.sample())
            total, done, turns = total + r, term or trunc, turns + 1
        print(f"episode {i}: task={info.get('task_id')} turns={turns} reward={total:.3f} "
              f"components={step_info['rewards']} terminated={term} truncated={trunc}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="r1gym", description="GRPO training of reasoning LLMs, the DeepSeek-R1 way.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="run GRPO training (Hydra overrides as arguments)")
    p.add_argument("overrides", nargs="*", help="e.g. experiment=demo trainer.max_steps=5")
    p = sub.add_parser("config", help="print the composed config")
    p.add_argument("overrides", nargs="*")
    sub.add_parser("plugins", help="list plugins and what they register")
    sub.add_parser("envs", help="list registered environment ids")
    p = sub.add_parser("env", help="environment tools")
    env_sub = p.add_subparsers(dest="env_command", required=True)
    c = env_sub.add_parser("check", help="run gymnasium's checker and a few random episodes")
    c.add_argument("env_id")
    c.add_argument("--episodes", type=int, default=3)
    c.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        if args.command == "train":
            return cmd_train(args.overrides)
        if args.command == "config":
            return cmd_config(args.overrides)
        if args.command == "plugins":
            return cmd_plugins()
        if args.command == "envs":
            return cmd_envs()
        return cmd_env_check(args.env_id, args.episodes, args.seed)
    except (UnknownNameError, FileNotFoundError, ValueError, TypeError, RuntimeError) as exc:
        from hydra.errors import HydraException  # noqa: F401  (Hydra's own errors are ValueErrors/others)

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
