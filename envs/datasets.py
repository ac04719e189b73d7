"""Tasks from a user's JSONL file: one JSON object per line, a prompt and a reference answer in each.

The file is read and checked once, at construction, so a bad record stops a run before any model is
loaded, with an error that names the file, the line, the missing field and the fields the record has.
A path ``pkg://package/relative/path`` names a file shipped inside an installed package (resolved with
:mod:`importlib.resources`, so it works from a wheel and from an editable install).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from r1gym.core.jsonl import iter_jsonl
from r1gym.envs.base import Task

PKG_PREFIX = "pkg://"
SAMPLE_ARITHMETIC = "pkg://r1gym.envs/data/sample_arithmetic.jsonl"


def resolve_path(path: str | Path) -> Path:
    """A filesystem path for ``path``; ``pkg://pkg.name/rel/path`` is looked up inside that package."""
    text = str(path)
    if not text.startswith(PKG_PREFIX):
        return Path(text).expanduser()
    package, _, relative = text[len(PKG_PREFIX) :].partition("/")
    if not package or not relative:
        raise ValueError(f"a package path looks like 'pkg://package.name/relative/file.jsonl', got {text!r}")
    resource = importlib.resources.files(package).joinpath(relative)
    return Path(str(resource))


class JsonlSource:
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

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, index: int) -> Task:
        return self.tasks[index]

    def _get(self, record: dict[str, Any], name: str, role: str, lineno: int) -> Any:
        if name not in record:
            raise ValueError(
                f"{self.path}:{lineno}: record has no field {name!r} ({role}); "
                f"its fields are {sorted(record)}"
            )
        return record[name]

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
