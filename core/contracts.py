"""The contracts a plugin implements when it contributes a sandbox or a judge backend.

They live in core, not in the built-in plugins that implement them (``code``'s ``local`` sandbox, ``judge``'s
``local``/``openai`` backends), so that :mod:`r1gym.core.hookspecs` names only core types and a third-party
plugin imports only core to implement one, never a built-in plugin. The other contracts a hook names are
in core as well: :class:`r1gym.core.rollout.RolloutBackend`, :class:`r1gym.core.loggers.Logger`, reward
functions (:mod:`r1gym.core.rewards`); tasks are :class:`r1gym.envs.base.Task`.

Sandboxes (``r1gym_register_sandboxes``): a :class:`Sandbox` runs a :class:`Program` under :class:`Limits`
and reports a :class:`RunResult`; a program's misbehaviour is a status, never an exception.

Judge backends (``r1gym_register_judges``): a :class:`ChatBackend` answers chat messages or raises
:class:`JudgeError` when it cannot, so that the completion being judged is unscorable rather than scored 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

#: every status a :class:`RunResult` may have
STATUSES = ("ok", "runtime_error", "timeout", "memory_limit", "output_limit", "compile_error", "sandbox_error")
#: the languages a :class:`Program` may be written in
LANGUAGES = ("python", "cpp")


@dataclass(frozen=True)
class Limits:
    """Per-run limits. ``cpu_s`` defaults to ``time_s``; ``memory_mb`` is the address-space limit.
    ``compile_s`` bounds compiling (C++), wall clock and CPU, so a run as a whole takes at most
    ``compile_s + time_s``: a source that compiles for ever (``constexpr`` loops, template recursion) is a
    ``timeout`` at ``compile_s``, not a worker held for minutes. ``g++ -O2`` of a contest program takes
    about a second here (``bits/stdc++.h`` about three)."""

    time_s: float = 5.0
    cpu_s: float | None = None
    memory_mb: int = 512
    output_bytes: int = 1 << 20
    processes: int = 64
    file_mb: int = 16
    open_files: int = 64
    scratch_mb: int = 64
    compile_s: float = 10.0


@dataclass(frozen=True)
class Program:
    """A program to run: its ``language`` (one of :data:`LANGUAGES`), source, standard input, and extra
    files (name -> text) placed beside it in its scratch directory."""

    language: str
    source: str
    stdin: str = ""
    files: Mapping[str, str] = field(default_factory=dict)


@dataclass
class RunResult:
    """What happened. ``status`` is one of :data:`STATUSES`; ``detail`` says why when it is not ``ok``."""

    status: str
    exit_code: int | None
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float
    detail: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Sandbox(Protocol):
    """What code rewards and environments need from a sandbox backend (``local``, ``e2b``)."""

    def run(self, program: Program, limits: Limits = Limits()) -> RunResult:
        """Run ``program`` under ``limits``; never raise for a program's misbehaviour (that is a status)."""
        ...


Message = dict[str, str]


class JudgeError(Exception):
    """The judge model could not be asked (the call failed for good): the completion cannot be scored."""


class ChatBackend(Protocol):
    """A chat model a judge can ask."""

    def chat(self, messages: list[Message], *, max_tokens: int, temperature: float) -> str:
        """The model's reply to ``messages``; raises :class:`JudgeError` when it cannot get one."""
        ...
