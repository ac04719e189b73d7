"""Programming tasks from JSONL/JSON/Parquet files in the common benchmark formats: the task source ``code``.

Every task becomes the same thing: a prompt, ``tests`` (``{"assert": code}`` run after the solution, or
``{"stdin": ..., "stdout": ...}``), ``public_tests`` (the ones a multi-turn env may show the model; a subset
of ``tests`` or examples from the statement), ``language``, ``setup`` (code run before the solution) and
``answer`` (a reference solution, ``""`` when the format has none). Formats, chosen per record by
``format=auto`` from the fields the record has:

* ``r1gym``: ``prompt``, ``tests``, optional ``solution``, ``language``, ``setup``, ``entry_point``, ``public_tests`` (our
  own format, ``plugins/code/data/sample_code.jsonl``);
* ``humaneval`` (``task_id``, ``prompt``, ``entry_point``, ``canonical_solution``, ``test``): the test
  defines ``check(candidate)``; it runs as one assert test, ``check(<entry_point>)``, with the record's
  prompt as ``setup`` and its ``entry_point`` as the function under test. The prompt asks for the complete
  function whose signature and docstring the record gives;
* ``mbpp`` (``text``, ``code``, ``test_list``, optional ``test_setup_code``): one assert test per entry
  of ``test_list``; the first is shown in the prompt (as MBPP's paper prompt does) and is the public test;
* ``code_contests``: a statement (``description`` or ``content``) and stdin/stdout tests, either
  DeepMind's ``public_tests``/``private_tests``/``generated_tests`` (``{"input": [...], "output": [...]}``)
  or a ``test`` list of ``{"input": {"stdin": ...}, "output": {"stdout": ...}}`` (a JSON string or a
  list). Public tests are the statement's examples where given, else the first test. The problem's
  ``name`` (or ``labels.name``) goes into the task's public ``meta``; its reference solution (``answer``)
  is a ``solution`` field, else the first Python 3 program of DeepMind's ``solutions``.

How outputs are judged (:mod:`r1gym.plugins.code.compare`): an r1gym or code_contests record may carry a
``comparison`` (``"lines"``, ``"tokens float_abs=1e-6"``, ``{"mode": "checker", "checker": ...}``) or a
``checker`` field (a testlib-style Python checker's source); it is validated here and kept in the task's
fields, and without one the ``code_tests`` reward's ``default_comparison`` applies. DeepMind's public
CodeContests data has no checker programs although some problems accept several outputs: such a task is
judged against its one stored output unless a checker is given (in the record or in ``references``).
``references`` (a JSONL, :func:`read_references`) adds reference solutions, and comparisons, to a file
that has none, matched by problem name: ``r1gym data check env=code`` runs them against the tests.

``split`` keeps the ``train`` or ``test`` part (a stable hash of the prompt) or ``all``. Records are read and
checked once: a record without tests, or without the fields of its format, stops with the file, line and
fields the record has. :meth:`CodeSource.from_records` reads records already in memory (a Hugging Face
dataset's rows) with the same readers and checks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from r1gym.envs.base import Task
from r1gym.core.paths import resolve_path
from r1gym.envs.datasets import TaskList, field_of, read_records, split_of
from r1gym.plugins.code.compare import parse_comparison

FORMATS = ("auto", "r1gym", "humaneval", "mbpp", "code_contests")
SPLITS = ("all", "train", "test")
SAMPLE = "pkg://r1gym.plugins.code/data/sample_code.jsonl"
ANSWER_AS = "Write your solution as one ```{language} code block."
PYTHON3 = 3  # DeepMind CodeContests' language code of Python 3 solutions
STDIO_AS = ("Write a complete Python 3 program that reads the input from standard input and prints the answer to "
            "standard output, as one ```python code block.")


def detect_format(record: dict[str, Any]) -> str | None:
    """The format a record is in (see the module docstring), or ``None``."""
    if "entry_point" in record and "test" in record and "prompt" in record:
        return "humaneval"
    if "test_list" in record and "text" in record:
        return "mbpp"
    if ("description" in record or "content" in record) and (
            "public_tests" in record or "private_tests" in record or "test" in record):
        return "code_contests"
    if "prompt" in record and "tests" in record:
        return "r1gym"
    return None


def _io_pairs(block: Any) -> list[dict[str, str]]:
    """DeepMind code_contests' ``{"input": [...], "output": [...]}`` as stdin/stdout tests."""
    if not block:
        return []
    inputs, outputs = block.get("input") or [], block.get("output") or []
    return [{"stdin": str(i), "stdout": str(o)} for i, o in zip(inputs, outputs)]


def _test_list(value: Any) -> list[dict[str, str]]:
    """A ``test`` field of ``[{"input": {"stdin": ...}, "output": {"stdout": ...}}]`` (maybe a JSON string)."""
    if isinstance(value, str):
        value = json.loads(value)
    out = []
    for t in value or []:
        stdin, stdout = t.get("input", {}), t.get("output", {})
        out.append({"stdin": str(stdin.get("stdin", "") if isinstance(stdin, dict) else stdin),
                    "stdout": str(stdout.get("stdout", "") if isinstance(stdout, dict) else stdout)})
    return out


def _python3_solution(solutions: Any) -> str:
    """The first Python 3 program among DeepMind CodeContests' ``solutions`` (``{"language": [...],
    "solution": [...]}``, language 3 = PYTHON3), or ``""``."""
    if isinstance(solutions, str):
        try:
            solutions = json.loads(solutions)
        except json.JSONDecodeError:
            return ""
    if not isinstance(solutions, dict):
        return ""
    pairs = zip(solutions.get("language") or [], solutions.get("solution") or [])
    return next((str(code) for language, code in pairs if language == PYTHON3), "")


def _comparison_of(record: dict[str, Any]) -> dict[str, Any]:
    """The record's ``comparison`` (validated, kept as written), or a ``checker`` field's Python source as a
    ``checker`` comparison; ``{}`` when it has neither (the reward's ``default_comparison`` applies)."""
    if record.get("checker") and record.get("comparison") is not None:
        raise ValueError("a record has a 'checker' and a 'comparison'; give one (comparison: {mode: checker, checker: ...})")
    if record.get("checker"):
        spec = {"mode": "checker", "checker": str(record["checker"])}
    elif record.get("comparison") is not None:
        spec = record["comparison"]
    else:
        return {}
    parse_comparison(spec)
    return {"comparison": spec}


def read_references(path: str | Path) -> dict[str, dict[str, Any]]:
    """Reference solutions kept apart from a data file (CodeContests' public samples come without): a JSONL of
    ``{"name": <the problem's name>, "solution": <python source>}``, optionally with a ``comparison`` or a
    ``checker`` (as in a task record) and a free-text ``note``. ``CodeSource(references=...)`` matches them to
    records by name (CodeContests' ``name``, or ``labels.name``; else ``task_id``) and sets the task's
    ``answer`` (and its comparison) from them. Returns ``{name: reward fields}``."""
    refs: dict[str, dict[str, Any]] = {}
    where = resolve_path(path).name
    for lineno, r in read_records(path):
        if not isinstance(r, dict) or not r.get("name") or not isinstance(r.get("solution"), str):
            raise ValueError(f"{where}:{lineno}: a reference needs 'name' and 'solution' (a string); got "
                             f"{sorted(r) if isinstance(r, dict) else type(r).__name__}")
        if str(r["name"]).strip() in refs:
            raise ValueError(f"{where}:{lineno}: a second reference for {r['name']!r}")
        try:
            refs[str(r["name"]).strip()] = {"answer": r["solution"], **_comparison_of(r)}
        except ValueError as exc:
            raise ValueError(f"{where}:{lineno}: {exc}") from None
    return refs


class CodeSource(TaskList):
    """A task per programming problem (see the module docstring)."""

    def __init__(
        self,
        path: str | Path = SAMPLE,
        format: str = "auto",
        id_field: str | None = None,
        meta_fields: Iterable[str] = (),
        prompt_template: str = "{problem}",
        split: str = "all",
        test_fraction: float = 0.1,
        limit: int | None = None,
        max_tests: int | None = None,
        references: str | Path | None = None,
        records: Iterable[Mapping[str, Any]] | None = None,
    ):
        """``max_tests`` keeps the first that many tests of each task (contest problems can have hundreds).
        ``references``: a JSONL of reference solutions for files that have none (see :func:`read_references`).
        ``records``: the records themselves, read instead of the file (see :meth:`from_records`); ``path`` then
        only names them in errors, ids and ``meta["source"]``."""
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if "{problem}" not in prompt_template:
            raise ValueError(f"prompt_template must contain {{problem}}, got {prompt_template!r}")
        if max_tests is not None and max_tests < 1:
            raise ValueError(f"max_tests must be >= 1 or null, got {max_tests}")
        self.format, self.split, self.path = format, split, str(path)
        self.meta_fields = tuple(meta_fields)
        self.tasks: list[Task] = []
        name = resolve_path(path).name if records is None else str(path)
        numbered = (((f"{name}:{n}", f"{Path(name).stem}-{n}", r) for n, r in read_records(path)) if records is None
                    else ((f"{name} row {i}", f"{name}-{i}", r) for i, r in enumerate(records)))
        refs = read_references(references) if references else {}
        for where, default_id, record in numbered:
            if limit is not None and len(self.tasks) >= limit:
                break
            if not isinstance(record, Mapping):
                raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
            fmt = format if format != "auto" else detect_format(record)
            if fmt is None:
                raise ValueError(f"{where}: cannot tell the format of this record (known: {', '.join(FORMATS[1:])}); "
                                 f"its fields are {sorted(record)}")
            try:
                problem, fields, meta = getattr(self, f"_{fmt}")(record)
            except KeyError as exc:
                raise ValueError(f"{where}: a {fmt} record needs the field {exc}; its fields are {sorted(record)}") from None
            except ValueError as exc:  # a bad comparison or checker
                raise ValueError(f"{where}: {exc}") from None
            if not fields["tests"]:
                raise ValueError(f"{where}: the record has no test cases, so it cannot be scored")
            if max_tests is not None:
                fields["tests"] = fields["tests"][:max_tests]
            ref = refs.get(str(meta.get("name", ""))) or refs.get(str(record.get("name", record.get("task_id", ""))))
            if ref is not None:
                fields.update(ref)
            if split != "all" and split_of(problem, test_fraction) != split:
                continue
            task_id = str(field_of(record, id_field, "id_field", where)) if id_field else str(
                record.get("task_id", record.get("id", record.get("name", default_id))))
            meta = {"source": name, "format": fmt, **meta,
                    **{m: field_of(record, m, "meta_fields", where) for m in self.meta_fields}}
            self.tasks.append(Task(task_id, prompt_template.format(problem=problem), fields, meta))
        if not self.tasks:
            raise ValueError(f"{name}: no tasks (split={split!r}, limit={limit})")

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], name: str = "records", **params: Any) -> CodeSource:
        """The tasks of records already in memory (rows of a Hugging Face dataset, a generator), read and checked
        as a file's are; ``name`` stands for the file in errors (``<name> row 3``), default ids and meta.
        ``params`` are the constructor's (``format``, ``max_tests``, ...), ``path`` aside."""
        return cls(name, records=records, **params)

    # -- one reader per format: (prompt, reward fields, public meta) ---------------------------------------
    @staticmethod
    def _r1gym(r: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
        tests = list(r["tests"])
        fields = {"answer": r.get("solution", ""), "tests": tests, "language": r.get("language", "python"),
                  "setup": r.get("setup", ""), "public_tests": list(r.get("public_tests") or tests[:1]),
                  **({"entry_point": r["entry_point"]} if r.get("entry_point") else {}), **_comparison_of(r)}
        return str(r["prompt"]), fields, {}

    @staticmethod
    def _humaneval(r: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
        signature = str(r["prompt"])
        test = {"assert": f"{r['test']}\n\ncheck({r['entry_point']})"}
        problem = (f"Complete the Python function `{r['entry_point']}` below. Write the whole function (with the "
                   f"imports it needs) as one ```python code block.\n\n```python\n{signature.rstrip()}\n```")
        # the prompt is the setup, as in HumanEval's own harness (prompt + completion + test): its imports and
        # helpers (poly, encode_cyclic) are there for the candidate, and the judge checks with the reference ones
        fields = {"answer": signature + str(r.get("canonical_solution", "")), "tests": [test], "language": "python",
                  "setup": signature, "entry_point": str(r["entry_point"]),
                  "public_tests": []}  # HumanEval's examples are in the docstring already
        return problem, fields, {}

    @staticmethod
    def _mbpp(r: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
        tests = [{"assert": str(a)} for a in r["test_list"]]
        problem = (f"{str(r['text']).strip()} Your code should pass this test:\n\n{r['test_list'][0]}\n\n"
                   + ANSWER_AS.format(language="python")) if tests else str(r["text"])
        fields = {"answer": str(r.get("code", "")), "tests": tests, "language": "python",
                  "setup": str(r.get("test_setup_code") or ""), "public_tests": tests[:1]}
        return problem, fields, {}

    @staticmethod
    def _code_contests(r: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
        statement = str(r["description"] if "description" in r else r["content"]).strip()
        public = _io_pairs(r.get("public_tests"))
        tests = public + _io_pairs(r.get("private_tests")) + _io_pairs(r.get("generated_tests"))
        if "test" in r:
            tests += _test_list(r["test"])
        meta: dict[str, Any] = {}
        labels = r.get("labels")
        if isinstance(labels, str):
            try:
                labels = json.loads(labels)
            except json.JSONDecodeError:
                labels = None
        if isinstance(labels, dict) and "difficulty" in labels:
            meta["difficulty"] = labels["difficulty"]
        elif "difficulty" in r:
            meta["difficulty"] = r["difficulty"]
        name = labels.get("name") if isinstance(labels, dict) and labels.get("name") else r.get("name")
        if name:
            meta["name"] = str(name).strip()
        fields = {"answer": str(r.get("solution") or _python3_solution(r.get("solutions"))), "tests": tests,
                  "language": "python", "setup": "",
                  "public_tests": public or tests[:1], **_comparison_of(r)}
        return f"{statement}\n\n{STDIO_AS}", fields, meta
