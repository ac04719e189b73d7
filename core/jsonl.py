"""Files a run writes and reads back: JSONL read with errors that name the file and line (datasets, score
inputs, samples), files replaced atomically (configs, manifests, summaries), and append-only JSONL logs read
tolerantly at a torn tail (progress files).

Why: a run can be killed at any moment (SIGKILL, a pre-empted node, a full disk). A file it reads back on
resume must then be either the old version or the new one, never half of one (:func:`atomic_write_text`), and
a log it appends to may end in a line cut short, which must cost that one line, not the resume
(:func:`read_appended_jsonl`).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` for every non-blank line; each record must be a JSON object."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            yield lineno, record


log = logging.getLogger(__name__)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that no reader, and no resume after a kill at any moment, ever sees a
    torn file: written to a temporary file in the same folder, flushed to disk, then renamed over ``path``
    (``os.replace`` is atomic within one file system)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_appended_jsonl(path: str | Path, *, repair: bool = True) -> list[dict[str, Any]]:
    """The records of an append-only JSONL file that a run writes as it goes (a progress file, a log).

    A last line that is not valid JSON and has no newline after it was cut by a kill while it was written: it
    is dropped with a warning and, with ``repair``, cut from the file too, so that the next append starts on a
    line of its own instead of gluing onto the fragment. A bad line anywhere else is damage, not a torn tail,
    and raises an error naming the file and line."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    records: list[dict[str, Any]] = []
    offset = 0
    for lineno, raw in enumerate(lines, start=1):
        last = lineno == len(lines)
        if raw.strip():
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                if last:  # no newline after it: the line being written when the run stopped
                    log.warning("%s:%d: dropping a line cut short (%d bytes; the run was stopped while writing it)",
                                path, lineno, len(raw))
                    if repair:
                        with open(path, "r+b") as f:
                            f.truncate(offset)
                    break
                raise ValueError(f"{path}:{lineno}: invalid JSON in the middle of the file ({exc}); it is not a torn "
                                 "last line, so the file was damaged: restore it or remove the line") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            records.append(record)
        offset += len(raw) + 1
    else:
        if repair and data and not data.endswith(b"\n"):  # a whole last record whose newline was not written yet
            with open(path, "ab") as f:
                f.write(b"\n")
    return records
