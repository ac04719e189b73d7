"""The code plugin's command line: ``r1gym sandbox run`` and ``r1gym sandbox check``.

Registered through ``r1gym_register_cli_commands`` (see :mod:`r1gym.plugins.code`), so the core CLI knows no
sandbox: a plugin that contributes a sandbox backend gets both commands for it by name (``--backend``).
Each command runs against the sandboxes of the plugin host the command line was built from.
"""

from __future__ import annotations

import argparse
import difflib
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from r1gym.core.plugins import PluginHost

SUFFIXES = {".py": "python", ".cpp": "cpp", ".cc": "cpp", ".cxx": "cpp"}


def run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the program (.py, .cpp)")
    parser.add_argument("--backend", default="local")
    parser.add_argument("--language", default=None, help="python or cpp (default: from the file's suffix)")
    parser.add_argument("--timeout", type=float, default=5.0, help="wall-clock limit in seconds")
    parser.add_argument("--memory", type=int, default=512, help="address-space limit in MB")
    parser.add_argument("--stdin", dest="stdin_path", default=None, help="a file to give the program as standard input")


def sandbox_run(args: argparse.Namespace, host: PluginHost) -> int:
    """Run one program in a sandbox backend; print its :class:`~r1gym.core.contracts.RunResult` as JSON."""
    from r1gym.core.contracts import LANGUAGES, Limits, Program

    factory = host.sandboxes.get(args.backend)  # unknown names list the known ones
    source = Path(args.file)
    language = args.language or SUFFIXES.get(source.suffix)
    if language not in LANGUAGES:
        raise ValueError(f"cannot tell the language of {args.file}; pass --language ({', '.join(LANGUAGES)})")
    stdin = Path(args.stdin_path).read_text() if args.stdin_path else ""
    result = factory().run(Program(language, source.read_text(), stdin=stdin), Limits(time_s=args.timeout, memory_mb=args.memory))
    print(json.dumps(result.to_dict(), indent=2))
    return 0


def check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default="local")
    parser.add_argument("--only", nargs="+", default=[], metavar="NAME", help="run only these attacks")
    parser.add_argument("--host-checks", action="store_true",
                        help="also check this host after each attack (default: only for the local backend)")


def sandbox_check(args: argparse.Namespace, host: PluginHost) -> int:
    """Run the conformance suite (:mod:`r1gym.plugins.code.conformance`) against a sandbox backend, print a
    table; exit 1 if an attack got through that is not a known weakness."""
    from r1gym.plugins.code.conformance import ATTACKS, run_conformance
    from r1gym.plugins.code.sandbox import LocalSandbox

    factory = host.sandboxes.get(args.backend)  # unknown names list the known ones
    names = [a.name for a in ATTACKS]
    for name in args.only:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"there are {len(names)}: {', '.join(names)}"
            raise ValueError(f"no attack named {name!r}; {hint}")
    attacks = [a for a in ATTACKS if not args.only or a.name in args.only]
    sandbox = factory()
    host_checks = args.host_checks or isinstance(sandbox, LocalSandbox)  # the host is this machine
    known = []

    def row(outcome) -> None:
        if outcome.reasons and outcome.attack.xfail_reason:
            known.append(outcome.attack.name)
        verdict = "pass" if outcome.passed else ("xfail" if outcome.attack.xfail_reason else "FAIL")
        status = outcome.result.status if outcome.result else "-"
        why = "; ".join(outcome.reasons) + (f" [known: {outcome.attack.xfail_reason}]" if outcome.reasons and
                                             outcome.attack.xfail_reason else "")
        print(f"{verdict:5}  {outcome.attack.category:10}  {outcome.attack.name:42}  {status:13}  "
              f"{outcome.seconds:5.1f}s  {why}", flush=True)

    print(f"{'':5}  {'category':10}  {'attack':42}  {'status':13}  {'time':>6}  why it failed"
          f"{'' if host_checks else '   (no host checks: the sandbox runs elsewhere)'}")
    failures = run_conformance(sandbox, attacks, host_checks=host_checks, report=row)
    print(f"{len(attacks) - len(failures) - len(known)} of {len(attacks)} attacks passed against the {args.backend} "
          f"sandbox, {len(failures)} failed" + (f", {len(known)} known weaknesses failed as expected (xfail): "
                                                f"{', '.join(known)}" if known else ""))
    return 1 if failures else 0
