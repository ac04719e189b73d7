"""``r1gym/CodeExec-v0``: a programming episode of several turns, with code execution as the env's reply.

Each turn the model either

* **runs code**: a code block inside ``<execute> ... </execute>``. The env runs it in the sandbox (no stdin)
  and replies with its output and status; nothing is scored yet; or
* **submits**: a code block outside ``<execute>``. The env runs it against the task's *public* tests (the
  statement's examples, or the first test; never the hidden ones) and, if one fails, replies with that test,
  the expected and the actual output or the error. When the public tests pass (or there are none), or the
  turns run out, the episode ends and the last completion is scored by the env's rewards (``code_tests``
  over *all* the task's tests, ``code_format``).

A sandbox that fails while answering a turn is logged and counted (``sandbox_errors``); the episode then
ends and is scored as usual (which marks it unscorable if the sandbox is still down), so no completion is
judged on an infrastructure failure.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from r1gym.core.rewards import Unscorable
from r1gym.envs.base import MultiTurnEnv, Task
from r1gym.plugins.code.rewards import _pool, code_tests, extract_code, run_tests

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "\n\nYou can run code before you answer: put a ```{language} block inside <execute> </execute> and you will "
    "see what it prints. When you are ready, give your solution as a ```{language} block outside <execute>; it is "
    "checked on the example tests and, if one fails, you will see which. You have {turns} turns in all."
)


def _fence(text: str, limit: int) -> str:
    if len(text) > limit:
        text = text[:limit] + f"\n... ({len(text) - limit} more characters)"
    return f"```\n{text.rstrip()}\n```"


class CodeExecEnv(MultiTurnEnv):
    """See the module docstring. ``run_tag`` names the tag of run requests; ``output_chars`` caps each
    output shown to the model; the sandbox settings are those of ``code_tests``."""

    def __init__(
        self,
        *args: Any,
        max_turns: int = 4,
        run_tag: str = "execute",
        output_chars: int = 1500,
        time_limit: float = 5.0,
        memory_mb: int = 512,
        sandbox: str = "local",
        sandbox_options: Mapping[str, Any] | None = None,
        workers: int = 4,
        **kwargs: Any,
    ):
        super().__init__(*args, max_turns=max_turns, **kwargs)
        if not re.fullmatch(r"[A-Za-z_][\w-]*", run_tag):
            raise ValueError(f"run_tag must be a tag name such as 'execute', got {run_tag!r}")
        self._run = re.compile(rf"<{run_tag}>(.*?)</{run_tag}>", re.DOTALL)
        self.run_tag, self.output_chars = run_tag, output_chars
        self.sandbox_settings = {"time_limit": time_limit, "memory_mb": memory_mb, "sandbox": sandbox,
                                 "sandbox_options": dict(sandbox_options or {}), "workers": workers}
        self.sandbox_errors = 0

    def initial_messages(self, task: Task) -> list[dict[str, str]]:
        msgs = super().initial_messages(task)
        language = task.fields.get("language", "python")
        msgs[-1] = {**msgs[-1], "content": msgs[-1]["content"]
                    + INSTRUCTIONS.format(language=language, turns=self.max_turns).replace("execute", self.run_tag)}
        return msgs

    def feedback(self, task: Task, completion: str) -> str | None:
        language = task.fields.get("language", "python")
        runs = self._run.findall(completion)
        try:
            if runs:
                code = extract_code(runs[-1], language)
                if code is None:
                    return f"Found <{self.run_tag}> but no ```{language} block inside it; nothing was run."
                return self._show_run(code, language)
            code = extract_code(completion, language)
            if code is None:
                return f"No ```{language} code block found. Give your solution as one ```{language} block."
            return self._check_public(task, code, language)
        except Unscorable as exc:
            self.sandbox_errors += 1
            log.warning("CodeExec-v0 task %s: the sandbox failed while answering a turn (%s); ending the episode "
                        "(%d such failures in this env so far)", task.id, exc, self.sandbox_errors)
            return None

    def _comparison(self, task: Task) -> Any:
        """The task's ``comparison``, else the ``default_comparison`` of the env's ``code_tests`` reward."""
        if task.fields.get("comparison") is not None:
            return task.fields["comparison"]
        scorer = next((c for c in self.reward_set.components if c.fn is code_tests), None)
        return scorer.params.get("default_comparison") if scorer is not None else None

    def _show_run(self, code: str, language: str) -> str:
        from r1gym.core.contracts import Limits, Program

        s = self.sandbox_settings
        pool = _pool(s["sandbox"], s["workers"], s["sandbox_options"], self.host)
        result = pool.submit(Program(language, code), Limits(time_s=s["time_limit"], memory_mb=s["memory_mb"])).result()
        if result.status == "sandbox_error":
            raise Unscorable(f"sandbox error: {result.detail}")
        parts = [f"Your code ran: {result.status}" + (f" ({result.detail})" if result.detail else "") + "."]
        parts.append("Output:\n" + _fence(result.stdout, self.output_chars) if result.stdout else "It printed nothing.")
        if result.stderr.strip():
            parts.append("Errors:\n" + _fence(result.stderr[-self.output_chars:], self.output_chars))
        return "\n".join(parts)

    def _check_public(self, task: Task, code: str, language: str) -> str | None:
        public = task.fields.get("public_tests") or []
        if not public:
            return None
        s = self.sandbox_settings
        runs = run_tests(code, public, language=language, setup=task.fields.get("setup", ""),
                         entry_point=task.fields.get("entry_point"),
                         stop_at_first_failure=True, comparison=self._comparison(task), host=self.host, **s)
        failed = next((r for r in runs if not r.passed), None)
        if failed is None:
            return None
        why = f"wrong output ({failed.message})" if failed.result.status == "ok" else failed.message
        if "assert" in failed.test:
            parts = ["Your solution failed this test:", f"```{language}\n{failed.test['assert'].strip()}\n```",
                     f"Result: {why}."]
        else:
            parts = ["Your solution failed an example test.", "Input:\n" + _fence(str(failed.test.get("stdin", "")), self.output_chars),
                     "Expected output:\n" + _fence(str(failed.test["stdout"]), self.output_chars),
                     "Your output:\n" + _fence(failed.output, self.output_chars), f"Result: {why}."]
        if failed.result.stderr.strip():
            parts.append("Errors:\n" + _fence(failed.result.stderr[-self.output_chars:], self.output_chars))
        return "\n".join(parts)
