"""The audit log: one JSON line per finished review, appended to a local file the user can open.
No note text unless the user chose to keep it (Settings); the note's sha256 identifies it."""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from models.files import APP_NAME


def default_path() -> Path:
    override = os.environ.get("ICD10_CODER_AUDIT")
    if override:
        return Path(override)
    base = os.environ.get("XDG_DATA_HOME") or (Path.home() / ".local" / "share")
    return Path(base) / APP_NAME / "audit.jsonl"


def append(record: dict, path: Path | None = None) -> Path:
    path = path or default_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    # One line, written whole under an exclusive lock with O_APPEND: another process appending at
    # the same time (a second window, a script) can never split or interleave it.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock
    return path


def read(path: Path | None = None) -> list[dict]:
    path = path or default_path()
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a power loss is skipped, not fatal
    return out
