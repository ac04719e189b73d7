"""Hugging Face ``datasets`` as a task source, ``hf_dataset`` (registered by :mod:`r1gym.plugins.hf_datasets`,
which imports this module only when the plugin host collects task sources: ``import r1gym.envs`` stays light).

Where the data comes from (``path``):

* a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (read with ``load_from_disk``);
* a hub id (``openai/gsm8k``, with ``config: main``) through ``datasets.load_dataset``: offline first, from
  the local cache when ``HF_HUB_OFFLINE=1`` (the error says how to fetch it once, online);
* a builder and files: ``path: json`` (or ``parquet``, ``csv``) with ``data_files``, or a data file itself
  (``path: data/train.jsonl``, read by the builder of its suffix).

``split`` picks a split (``train``, ``test``), with the ``datasets`` slicing syntax (``train[:90%]``,
``train[90%:]`` for a held-out part of a set that has one split); ``null`` takes a single-split dataset whole.
``streaming: true`` reads an ``IterableDataset`` without loading it: the source keeps the first ``limit``
rows (required: a stream has no end you can wait for), after a shuffle buffer of ``shuffle_buffer`` rows
when given. Its ``len()`` is the number of tasks it keeps (``limit``, or fewer if the stream ended), not the
size of the dataset. Without streaming, ``shuffle: true`` shuffles the whole split (by ``seed``) before
``limit``. The tasks are built and checked once, at construction, like every r1gym source.

Layouts recognised from the columns, with no mapping (docs/datasets.md has the whole table):

* math (``math_accuracy`` reads ``fields["answer"]``): GSM8K (``question``/``answer`` with ``#### 42``),
  MATH (``problem``/``solution`` with ``\\boxed{}``, and MATH-500's ``answer``), NuminaMath-CoT
  (``problem``/``solution``/``messages``), OpenR1-Math (``problem``/``solution``/``answer``/...): the reference
  answer is read by the ``math`` source itself (:meth:`r1gym.plugins.math.data.MathSource.from_records`, format
  ``auto``);
* code (``code_tests`` reads ``tests``, ``public_tests``, ``setup``, ``entry_point``, ``language``): HumanEval,
  MBPP (also its sanitized layout ``prompt``/``test_list``/``test_imports``) and CodeContests, read by the
  ``code`` source itself (:meth:`r1gym.plugins.code.data.CodeSource.from_records`); APPS and TACO (``question``,
  ``solutions`` and ``input_output`` as JSON strings, ``starter_code``, ``fn_name``) here: stdin/stdout tests,
  or, for a function-call problem, one assert per call.

Any other set is read through ``columns``, a map from task roles to column names: ``{prompt: instruction,
answer: output}``, plus ``id`` and any further reward field (``{tests: test_cases}``); the answer is read by
``answer_format`` (``auto``: after ``####`` if there is one, else the last ``\\boxed{}`` if there is one, else
the text as it is; or ``plain``, ``gsm8k``, ``boxed``). A set of no known layout and no ``columns`` fails with
the columns it has and the layouts known.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from r1gym.envs.base import Task
from r1gym.envs.datasets import TaskList

log = logging.getLogger(__name__)

BUILDERS = ("json", "parquet", "csv", "text", "arrow")
#: a data file given as ``path`` is read by the builder of its suffix
SUFFIX_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
ANSWER_FORMATS = ("auto", "plain", "gsm8k", "boxed")


# -- layouts: (name, the columns that identify it, how its rows are read) ------------------------------------------
#: what a layout's reader gives: (row index, problem, reward fields, public meta) per row it keeps, in order
Read = list[tuple[int, str, dict[str, Any], dict[str, Any]]]


def _as_read(source: TaskList, drop: tuple[str, ...] = ("source",)) -> Read:
    """A math or code source's tasks (one per record, in order: no split, no limit) as a layout reader's rows,
    less the meta keys in ``drop`` (the source's own ``meta["source"]`` gives way to the dataset's)."""
    return [(i, t.prompt, dict(t.fields), {k: v for k, v in t.meta.items() if k not in drop})
            for i, t in enumerate(source.tasks)]


def _math(rows: list[dict[str, Any]], where: str, max_tests: int | None) -> Read:
    """GSM8K, MATH, MATH-500, NuminaMath-CoT, OpenR1-Math: read by the ``math`` source itself
    (:meth:`MathSource.from_records`, format ``auto``: ``answer`` with ``####``: the text after it; another
    ``answer``: as it is; no answer: the solution's last ``\\boxed{}``)."""
    from r1gym.plugins.math.data import MathSource

    return _as_read(MathSource.from_records(rows, where))


def _code(fmt: str) -> Callable[[list[dict[str, Any]], str, int | None], Read]:
    """HumanEval, MBPP (and its sanitized layout) and CodeContests: read by the ``code`` source itself
    (:meth:`CodeSource.from_records` in ``fmt``), which also keeps the first ``max_tests`` tests."""
    def read(rows: list[dict[str, Any]], where: str, max_tests: int | None) -> Read:
        from r1gym.plugins.code.data import CodeSource

        if fmt == "mbpp":  # MBPP sanitized: the prompt is the text, the imports the setup
            rows = [row if "text" in row else {**row, "text": row["prompt"],
                                                "test_setup_code": "\n".join(row.get("test_imports") or [])}
                    for row in rows]
        # a code record's format is its layout's, which the task's meta names already
        return _as_read(CodeSource.from_records(rows, where, format=fmt, max_tests=max_tests), ("source", "format"))

    return read


def _each(layout: str, convert: Callable[[dict[str, Any], str], tuple[str, dict[str, Any], dict[str, Any]]],
          skip: bool = False) -> Callable[[list[dict[str, Any]], str, int | None], Read]:
    """A reader that converts row by row (APPS/TACO, a ``columns`` mapping). With ``skip`` (APPS and TACO have
    rows without usable tests) a row that cannot be judged is left out, counted and logged; else it stops."""
    def read(rows: list[dict[str, Any]], where: str, max_tests: int | None) -> Read:
        out: Read = []
        skipped = []
        for i, row in enumerate(rows):
            try:
                problem, fields, meta = convert(row, f"{where} row {i}")
                if skip and not fields["tests"]:
                    raise ValueError("the row has no test cases, so it cannot be scored")
            except KeyError as exc:
                raise ValueError(f"{where} row {i}: a {layout} row needs the column {exc}; its columns are "
                                 f"{sorted(row)}") from None
            except ValueError as exc:
                if not skip:
                    raise ValueError(f"{where} row {i}: {exc}") from None
                skipped.append(f"row {i}: {exc}")
                continue
            if "tests" in fields and max_tests is not None:
                fields["tests"] = fields["tests"][:max_tests]
            out.append((i, problem, fields, meta))
        if skipped:
            log.warning("%s: skipped %d row(s) the code rewards cannot judge, e.g. %s", where, len(skipped), skipped[0])
        return out

    return read


def _apps(row: dict[str, Any], where: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """APPS and TACO: ``input_output`` (a JSON string) holds ``inputs``/``outputs`` and, for a function-call
    problem, ``fn_name``. Standard-input problems get stdin/stdout tests; call problems one assert per call,
    ``f(*inputs) == output`` (APPS wraps a return value in a one-item list: either form passes, as in APPS's own
    checker). A call problem whose starter code is a class (LeetCode's ``class Solution``) cannot be judged by
    the call harness, which calls functions: it raises ``ValueError`` and the source skips it, counted."""
    import json

    from r1gym.plugins.code.data import ANSWER_AS, STDIO_AS

    io = json.loads(row["input_output"]) if isinstance(row["input_output"], str) else row["input_output"]
    io = io or {}
    solutions = row.get("solutions") or "[]"
    solutions = json.loads(solutions) if isinstance(solutions, str) else solutions
    answer = str(solutions[0]) if solutions else ""
    statement, starter = str(row["question"]).strip(), str(row.get("starter_code") or "")
    fn_name = io.get("fn_name") or row.get("fn_name")
    inputs, outputs = io.get("inputs") or [], io.get("outputs") or []
    meta = {k: row[k] for k in ("difficulty", "name", "url") if row.get(k) not in (None, "")}
    if not fn_name:
        tests = [{"stdin": _text(i), "stdout": _text(o)} for i, o in zip(inputs, outputs)]
        prompt = f"{statement}\n\n{STDIO_AS}"
        return prompt, {"answer": answer, "tests": tests, "language": "python", "setup": "",
                        "public_tests": tests[:1]}, meta
    if starter.lstrip().startswith("class "):
        raise ValueError(f"a call problem whose starter code is a class ({starter.split(':')[0].strip()}): the call "
                         "harness judges functions")
    tests = []
    for args, out in zip(inputs, outputs):
        call = f"{fn_name}(*{args!r})"
        expected = f"in ({out!r}, {out[0]!r})" if isinstance(out, list) and len(out) == 1 else f"== {out!r}"
        tests.append({"assert": f"assert {call} {expected}"})
    prompt = (f"{statement}\n\nComplete the function `{fn_name}`:\n\n```python\n{starter.rstrip()}\n```\n\n"
              + ANSWER_AS.format(language="python")) if starter.strip() else f"{statement}\n\n" + ANSWER_AS.format(language="python")
    return prompt, {"answer": answer, "tests": tests, "language": "python", "setup": "", "entry_point": str(fn_name),
                    "public_tests": tests[:1]}, meta


def _text(value: Any) -> str:
    """An APPS input or output as text: most are strings, some are lists of lines."""
    return "\n".join(map(str, value)) + "\n" if isinstance(value, list) else str(value)


#: (layout, the columns that identify it, its reader); the first whose columns a dataset has wins
LAYOUTS: tuple[tuple[str, frozenset[str], Callable[[list[dict[str, Any]], str, int | None], Read]], ...] = (
    ("humaneval", frozenset({"task_id", "prompt", "canonical_solution", "test", "entry_point"}), _code("humaneval")),
    ("mbpp", frozenset({"text", "code", "test_list"}), _code("mbpp")),
    ("mbpp_sanitized", frozenset({"prompt", "code", "test_list"}), _code("mbpp")),
    ("code_contests", frozenset({"description", "public_tests", "private_tests"}), _code("code_contests")),
    ("code_contests", frozenset({"content", "test"}), _code("code_contests")),  # the r1gym/shared sample layout
    ("apps", frozenset({"question", "solutions", "input_output"}), _each("apps", _apps, skip=True)),  # APPS, TACO
    ("gsm8k", frozenset({"question", "answer"}), _math),
    ("math", frozenset({"problem", "solution"}), _math),                      # MATH, MATH-500, NuminaMath, OpenR1
    ("math_answer", frozenset({"problem", "answer"}), _math),                 # a problem with a final answer only
)


def detect_layout(columns: Iterable[str]) -> str | None:
    """The layout a dataset with ``columns`` is in, or ``None``."""
    have = set(columns)
    return next((name for name, needs, _ in LAYOUTS if needs <= have), None)


def _mapped(columns: Mapping[str, str], answer_format: str) -> Callable[..., tuple[str, dict[str, Any], dict[str, Any]]]:
    """A converter for ``columns`` (task role -> column): the answer read by ``answer_format``."""
    if "prompt" not in columns:
        raise ValueError(f"columns must map 'prompt' to a column, got {dict(columns)}")
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")

    def convert(row: dict[str, Any], where: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
        from r1gym.plugins.math.data import read_answer

        fields = {role: row[col] for role, col in columns.items() if role not in ("prompt", "id")}
        if "answer" in fields:
            text = str(fields["answer"])
            fmt = answer_format
            if fmt == "auto":
                fmt = "gsm8k" if "####" in text else "boxed" if "\\boxed" in text else "plain"
            fields["answer"] = read_answer({"answer": text, "solution": text}, {"boxed": "math"}.get(fmt, fmt),
                                           where=where)[1]
        return str(row[columns["prompt"]]), fields, {}

    return convert


class HFDatasetSource(TaskList):
    """A task per row of a Hugging Face dataset (see the module docstring)."""

    def __init__(
        self,
        path: str,
        split: str | None = "train",
        config: str | None = None,
        data_files: Any = None,
        columns: Mapping[str, str] | None = None,
        answer_format: str = "auto",
        layout: str = "auto",
        streaming: bool = False,
        limit: int | None = None,
        shuffle: bool = False,
        shuffle_buffer: int | None = None,
        seed: int = 0,
        prompt_template: str = "{problem}",
        max_tests: int | None = None,
        revision: str | None = None,
    ):
        """``config`` is the dataset's configuration (``main`` for GSM8K; ``datasets.load_dataset``'s ``name``,
        which in a source config is the source's own name)."""
        if "{problem}" not in prompt_template:
            raise ValueError(f"prompt_template must contain {{problem}}, got {prompt_template!r}")
        if streaming and limit is None:
            raise ValueError("streaming: true needs a limit (the number of rows to keep): a stream has no length")
        known_layouts = sorted({n for n, _, _ in LAYOUTS})
        if layout != "auto" and layout not in known_layouts:
            from r1gym.core.registry import UnknownNameError

            raise UnknownNameError("dataset layout", layout, known_layouts)
        self.path, self.split = str(path), split
        self.files = data_files if isinstance(data_files, str) else None  # named in errors and the tasks' meta
        rows = _load(self.path, split, config, data_files, streaming, revision)
        if streaming:
            if shuffle_buffer:
                rows = rows.shuffle(seed=seed, buffer_size=int(shuffle_buffer))
            rows = rows.take(int(limit))  # type: ignore[arg-type]
        else:
            if shuffle:
                rows = rows.shuffle(seed=seed)
            if limit is not None:
                rows = rows.select(range(min(int(limit), len(rows))))
        column_names = rows.column_names
        if column_names is None:  # a stream of files without a schema: the first row's keys
            column_names = list(next(iter(rows), None) or {})
        if columns:
            self.layout, read = "columns", _each("columns", _mapped(columns, answer_format))
            missing = sorted(set(columns.values()) - set(column_names))
            if missing:
                raise ValueError(f"{self._where()}: columns {missing} are not in the dataset; its columns are "
                                 f"{sorted(column_names)}")
        else:
            self.layout = detect_layout(column_names) if layout == "auto" else layout
            if self.layout is None:
                raise ValueError(f"{self._where()}: no known layout has these columns: {sorted(column_names)}. Known "
                                 f"layouts (and the columns they need): " + "; ".join(
                                     f"{n} ({', '.join(sorted(c))})" for n, c, _ in LAYOUTS)
                                 + ". Map yours with columns: {prompt: <column>, answer: <column>}")
            read = next(r for n, _, r in LAYOUTS if n == self.layout)
        # a column a row lacks is None in Arrow (JSON files of mixed records): absent, as in the file
        records = [{k: v for k, v in row.items() if v is not None} for row in rows]
        kept = read(records, self._where(), max_tests) if records else []
        self.tasks = [Task(str(records[i].get(columns["id"])) if columns and "id" in columns else _row_id(records[i], i),
                           prompt_template.format(problem=problem), fields,
                           {"source": self._where(), "layout": self.layout, **meta})
                      for i, problem, fields, meta in kept]
        if not self.tasks:
            raise ValueError(f"{self._where()}: no tasks (limit={limit}, {len(records) - len(kept)} skipped)")

    def _where(self) -> str:
        return (f"{self.path}:{Path(self.files).name}" if self.files else self.path) + (f" [{self.split}]" if self.split else "")


def _row_id(row: Mapping[str, Any], index: int) -> str:
    for key in ("task_id", "unique_id", "problem_id", "id", "name"):
        if row.get(key) not in (None, ""):
            return str(row[key])
    return f"row-{index}"


def _load(path: str, split: str | None, config: str | None, data_files: Any, streaming: bool,
          revision: str | None) -> Any:
    """The rows of one split: a ``datasets.Dataset``, or an ``IterableDataset`` when ``streaming``."""
    import datasets

    from r1gym.core.paths import resolve_path

    local = resolve_path(path)
    if local.is_dir() and ((local / "dataset_dict.json").is_file() or (local / "state.json").is_file()):
        loaded = datasets.load_from_disk(str(local))
        rows = _pick_split(loaded, split, path)
        return rows.to_iterable_dataset() if streaming else rows
    builder = SUFFIX_BUILDERS.get(local.suffix.lower()) if local.is_file() and data_files is None else None
    if builder:  # a data file named directly: its builder reads it
        path, data_files = builder, str(local)
    elif data_files is None and path not in BUILDERS and local.exists():
        raise ValueError(f"{path!r} is neither a save_to_disk folder (no dataset_dict.json or state.json in it) nor a "
                         f"hub id; for data files use path: json (or parquet, csv) with data_files: {path}")
    if streaming and split and "[" in split:
        raise ValueError(f"split {split!r}: slices need the whole split; with streaming use limit and shuffle_buffer")
    try:
        loaded = datasets.load_dataset(path, config, data_files=_files(data_files), split=split, streaming=streaming,
                                       revision=revision)
    except (ConnectionError, FileNotFoundError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        raise type(exc)(f"cannot load dataset {path!r} (config {config!r}, split {split!r}): {exc}." + (
            " HF_HUB_OFFLINE is set and it is not in the local cache: download it once with network access "
            f"(datasets.load_dataset({path!r}{', ' + repr(config) if config else ''}).save_to_disk(FOLDER), then "
            "path: FOLDER), or unset HF_HUB_OFFLINE" if offline else "")) from exc
    except ValueError as exc:
        if "split" in str(exc).lower() or "config" in str(exc).lower():
            raise ValueError(f"dataset {path!r}: {exc}") from exc
        raise
    if isinstance(loaded, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        return _pick_split(loaded, split, path)
    return loaded


def _files(data_files: Any) -> Any:
    """``data_files`` with each path resolved as config paths are (``pkg://`` included)."""
    from r1gym.core.paths import resolve_path

    if data_files is None:
        return None
    if isinstance(data_files, str):
        return str(resolve_path(data_files))
    if isinstance(data_files, Mapping):
        return {k: _files(v) for k, v in data_files.items()}
    return [str(resolve_path(f)) for f in data_files]


def _pick_split(loaded: Any, split: str | None, path: str) -> Any:
    """One split of a ``DatasetDict`` (``train[:90%]`` slicing included), or a single ``Dataset`` whole."""
    import datasets

    if not isinstance(loaded, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split not in (None, "train", "all"):
            raise ValueError(f"{path!r} is a single dataset with no splits; use split: null (or train), not {split!r}")
        return loaded
    if split is None:
        if len(loaded) != 1:
            raise ValueError(f"{path!r} has the splits {sorted(loaded)}: choose one with split")
        return next(iter(loaded.values()))
    base = split.split("[", 1)[0]
    if base not in loaded:
        from r1gym.core.registry import UnknownNameError

        raise UnknownNameError(f"split of {path!r}", base, list(loaded))
    rows = loaded[base]
    if "[" in split:
        (instruction,) = datasets.ReadInstruction.from_spec(split).to_absolute({base: len(rows)})
        rows = rows.select(range(instruction.from_ or 0, instruction.to if instruction.to is not None else len(rows)))
    return rows

