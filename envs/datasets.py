"""Tasks from a user's JSONL file: one JSON object per line, a prompt and a reference answer in each.

The file is read and checked once, at construction, so a bad record stops a run before any model is
loaded, with an error that names the file, the line, the missing field and the fields the record has.
A path ``pkg://package/relative/path`` names a file shipped inside an installed package (resolved with
:mod:`importlib.resources`, so it works from a wheel and from an editable install).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from r1gym.core.paths import resolve_path
from r1gym.core.jsonl import iter_jsonl
from r1gym.envs.base import Task

SAMPLE_ARITHMETIC = "pkg://r1gym.envs/data/sample_arithmetic.jsonl"


def split_of(text: str, test_fraction: float) -> str:
    """``"test"`` for a stable ``test_fraction`` of problem texts, ``"train"`` for the rest (a hash of the
    text, so a problem keeps its split however the file is ordered or cut)."""
    digest = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
    return "test" if (digest % 10_000) < test_fraction * 10_000 else "train"


def read_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line or row number, record)`` for a ``.jsonl``, ``.json`` (a list) or ``.parquet`` file."""
    p = resolve_path(path)
    if not p.is_file():
        raise FileNotFoundError(f"dataset {str(path)!r} not found (looked at {p})")
    suffix = p.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ImportError(f"reading {p.name} needs pyarrow: pip install pyarrow") from exc
        for i, row in enumerate(pq.read_table(p).to_pylist(), start=1):
            yield i, row
        return
    if suffix == ".json":
        data = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise ValueError(f"{p}: a .json dataset must be a list of objects")
        yield from enumerate(data, start=1)
        return
    yield from iter_jsonl(p)


def field_of(record: Mapping[str, Any], name: str, role: str, where: str) -> Any:
    """``record[name]``, or an error naming the place, the field, what it is for and the fields there are."""
    if name not in record:
        raise ValueError(f"{where}: record has no field {name!r} ({role}); its fields are {sorted(record)}")
    return record[name]


class TaskList:
    """A task source that holds its tasks in a list (``self.tasks``), read once at construction."""

    tasks: list[Task]

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, index: int) -> Task:
        return self.tasks[index]


class JsonlSource(TaskList):
    """A task per JSONL record.

    ``fields`` are extra record fields handed to the reward functions (a list of names, or a mapping
    ``{name_seen_by_rewards: record_field}``); ``task.fields["answer"]`` always holds ``answer_field``.
    ``meta_fields`` are public (copied into the env's ``info``), so the answer may not be one of them.
    ``id_field`` names a record id; without it the id is ``<file stem>-<line number>``.
    """

    def __init__(
        self,
        path: str | Path,
        prompt_field: str = "prompt",
        answer_field: str = "answer",
        id_field: str | None = None,
        fields: Sequence[str] | Mapping[str, str] | None = None,
        meta_fields: Iterable[str] = (),
        limit: int | None = None,
    ):
        self.path = resolve_path(path)
        self.meta_fields = tuple(meta_fields)
        extra = dict(fields) if isinstance(fields, Mapping) else {f: f for f in fields or ()}
        if "answer" in extra:
            raise ValueError("'answer' is always taken from answer_field; do not map it in fields")
        secret = {answer_field, *extra.values()}
        leaked = secret.intersection(self.meta_fields)
        if leaked:
            raise ValueError(f"meta_fields {sorted(leaked)} would put answer data in the env's public info")
        if not self.path.is_file():
            raise FileNotFoundError(f"JSONL dataset {str(path)!r} not found (looked at {self.path})")
        self.tasks: list[Task] = []
        for lineno, record in iter_jsonl(self.path):
            if limit is not None and len(self.tasks) >= limit:
                break
            self.tasks.append(self._task(record, lineno, prompt_field, answer_field, id_field, extra))
        if not self.tasks:
            raise ValueError(f"{self.path}: the file has no records")

    def _get(self, record: dict[str, Any], name: str, role: str, lineno: int) -> Any:
        return field_of(record, name, role, f"{self.path}:{lineno}")

    def _task(
        self,
        record: dict[str, Any],
        lineno: int,
        prompt_field: str,
        answer_field: str,
        id_field: str | None,
        extra: Mapping[str, str],
    ) -> Task:
        prompt = self._get(record, prompt_field, "prompt_field", lineno)
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"{self.path}:{lineno}: field {prompt_field!r} must be a non-empty string, got {prompt!r}")
        fields = {"answer": self._get(record, answer_field, "answer_field", lineno)}
        fields.update({name: self._get(record, src, "fields", lineno) for name, src in extra.items()})
        meta = {"source": self.path.name, **{m: self._get(record, m, "meta_fields", lineno) for m in self.meta_fields}}
        task_id = str(self._get(record, id_field, "id_field", lineno)) if id_field else f"{self.path.stem}-{lineno}"
        return Task(id=task_id, prompt=prompt, fields=fields, meta=meta)


class PromptSource(TaskList):
    """A task per record's ``prompt_field``, with no answer; ``fields`` (e.g. ``question``) go to rewards
    (judges and reward models read the prompt as ``question``)."""

    def __init__(self, path: str | Path, prompt_field: str = "prompt", id_field: str | None = None,
                 limit: int | None = None):
        name = resolve_path(path).name
        self.tasks = []
        for lineno, record in read_records(path):
            if limit is not None and len(self.tasks) >= limit:
                break
            where = f"{name}:{lineno}"
            prompt = str(field_of(record, prompt_field, "prompt_field", where))
            task_id = str(field_of(record, id_field, "id_field", where)) if id_field else f"{Path(name).stem}-{lineno}"
            self.tasks.append(Task(task_id, prompt, {"question": prompt, "prompt": prompt}, {"source": name}))
        if not self.tasks:
            raise ValueError(f"{name}: no prompts")
