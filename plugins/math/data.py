"""Math problems from JSONL, JSON or Parquet files in the usual formats.

Per record, the reference answer is read by ``format``:

* ``plain``: the ``answer_field`` as it is (MATH-500, most curated sets);
* ``gsm8k``: the text after the last ``#### `` of ``answer_field`` (GSM8K's worked answers);
* ``math``: the last ``\\boxed{}`` of ``solution_field`` (the MATH dataset's solutions);
* ``auto`` (default), per record: ``gsm8k`` if ``answer_field`` holds a ``####``, ``plain`` if it holds
  anything else, ``math`` if there is only a ``solution_field``. One file may mix formats.

The prompt is ``prompt_field``, or the first of ``problem``, ``question``, ``prompt`` that the record has,
put into ``prompt_template`` (``{problem}`` is the problem text). ``split`` keeps the ``train`` or ``test``
part (a stable hash of the problem text puts ``test_fraction`` of them in ``test``) or ``all``. Records are
read and checked once, at construction: a missing field stops with the file, line and the fields the
record has. :meth:`MathSource.from_records` reads records already in memory (a Hugging Face dataset's rows)
with the same readers and checks; :func:`read_answer` is the per-record answer reader on its own. A
reference that does not parse is *not* an error here (it cannot be scored in training); ``r1gym data check``
lists them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from r1gym.envs.base import Task
from r1gym.core.paths import resolve_path
from r1gym.envs.datasets import TaskList, field_of, read_records, split_of
from r1gym.plugins.math.extract import extract_reference, last_boxed

log = logging.getLogger(__name__)

FORMATS = ("auto", "plain", "gsm8k", "math")
SPLITS = ("all", "train", "test")
PROMPT_FIELDS = ("problem", "question", "prompt")
SAMPLE = "pkg://r1gym.plugins.math/data/sample_math.jsonl"


class MathSource(TaskList):
    """A task per math problem; ``task.fields["answer"]`` is the reference answer (see module docstring)."""

    def __init__(
        self,
        path: str | Path = SAMPLE,
        format: str = "auto",
        prompt_field: str | None = None,
        answer_field: str = "answer",
        solution_field: str = "solution",
        id_field: str | None = None,
        meta_fields: Iterable[str] = (),
        fields: Sequence[str] = (),
        prompt_template: str = "{problem}",
        split: str = "all",
        test_fraction: float = 0.1,
        limit: int | None = None,
        records: Iterable[Mapping[str, Any]] | None = None,
    ):
        """``records``: the records themselves, read instead of the file (see :meth:`from_records`); ``path``
        then only names them in errors, ids and ``meta["source"]``."""
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if not 0.0 <= test_fraction <= 1.0:
            raise ValueError(f"test_fraction must be within [0, 1], got {test_fraction}")
        if "{problem}" not in prompt_template:
            raise ValueError(f"prompt_template must contain {{problem}}, got {prompt_template!r}")
        self.meta_fields, self.extra_fields = tuple(meta_fields), tuple(fields)
        secret = {answer_field, solution_field, *self.extra_fields}.intersection(self.meta_fields)
        if secret:
            raise ValueError(f"meta_fields {sorted(secret)} would put answer data in the env's public info")
        self.path, self.format, self.split = str(path), format, split
        self.prompt_field, self.answer_field, self.solution_field = prompt_field, answer_field, solution_field
        self.tasks: list[Task] = []
        name = resolve_path(path).name if records is None else str(path)
        numbered = (((f"{name}:{n}", f"{Path(name).stem}-{n}", r) for n, r in read_records(path)) if records is None
                    else ((f"{name} row {i}", f"{name}-{i}", r) for i, r in enumerate(records)))
        no_box = 0
        for where, default_id, record in numbered:
            if limit is not None and len(self.tasks) >= limit:
                break
            if not isinstance(record, Mapping):
                raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
            prompt = self._prompt(record, where)
            if split != "all" and split_of(prompt, test_fraction) != split:
                continue
            fmt, answer = self._answer(record, where)
            no_box += fmt == "math" and not answer
            task_id = str(self._get(record, id_field, "id_field", where)) if id_field else default_id
            meta = {"source": name, "format": fmt, **{m: self._get(record, m, "meta_fields", where) for m in self.meta_fields}}
            task_fields = {"answer": answer, **{f: self._get(record, f, "fields", where) for f in self.extra_fields}}
            self.tasks.append(Task(task_id, prompt_template.format(problem=prompt), task_fields, meta))
        if no_box:
            log.warning("%s: %d MATH-format solution(s) without a \\boxed{} answer (they cannot be scored)", name, no_box)
        if not self.tasks:
            raise ValueError(f"{name}: no problems (split={split!r}, limit={limit})")

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], name: str = "records", **params: Any) -> MathSource:
        """The tasks of records already in memory (rows of a Hugging Face dataset, a generator), read and checked
        as a file's are; ``name`` stands for the file in errors (``<name> row 3``), default ids and meta.
        ``params`` are the constructor's (``format``, ``prompt_template``, ...), ``path`` aside."""
        return cls(name, records=records, **params)

    _get = staticmethod(field_of)

    def _prompt(self, record: Mapping[str, Any], where: str) -> str:
        if self.prompt_field:
            prompt = self._get(record, self.prompt_field, "prompt_field", where)
        else:
            name = next((f for f in PROMPT_FIELDS if f in record), None)
            if name is None:
                raise ValueError(f"{where}: record has none of the prompt fields {PROMPT_FIELDS} (set prompt_field); "
                                 f"its fields are {sorted(record)}")
            prompt = record[name]
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"{where}: the prompt must be a non-empty string, got {prompt!r}")
        return prompt

    def _answer(self, record: Mapping[str, Any], where: str) -> tuple[str, str]:
        return read_answer(record, self.format, self.answer_field, self.solution_field, where)


def read_answer(record: Mapping[str, Any], format: str = "auto", answer_field: str = "answer",
                solution_field: str = "solution", where: str = "record") -> tuple[str, str]:
    """The reference answer of one record and the format it was read by (``auto`` resolved per record, see the
    module docstring): ``read_answer({"answer": "Half is 21.\\n#### 21"})`` is ``("gsm8k", "21")``. Public so
    that a source with records of its own (a mapped Hugging Face column) reads answers exactly as this one."""
    fmt = format
    if fmt == "auto":
        value = record.get(answer_field)
        if value is not None and str(value).strip():
            fmt = "gsm8k" if "####" in str(value) else "plain"
        elif solution_field in record:
            fmt = "math"
        else:
            raise ValueError(f"{where}: record has neither an answer field {answer_field!r} nor a solution "
                             f"field {solution_field!r}; its fields are {sorted(record)}")
    if fmt == "math":
        solution = str(field_of(record, solution_field, "solution_field", where))
        return fmt, last_boxed(solution) or ""
    value = str(field_of(record, answer_field, "answer_field", where)).strip()
    if fmt == "gsm8k":
        if "####" not in value:
            raise ValueError(f"{where}: a GSM8K answer needs '#### <answer>' at its end, got {value[-80:]!r}")
        return fmt, extract_reference(value)
    return fmt, value
