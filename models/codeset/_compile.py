"""Compile ICD-10-CM from `simple-icd-10-cm` into the SQLite cache.

The only module that imports simple_icd_10_cm (slow to import: it parses 10 MB of XML).
"""
from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

from . import _schema

_CODE = r"[A-Z][0-9][0-9A-Z](?:\.?[0-9A-Z]{1,4})?"
_REF_GROUP = re.compile(r"\(([^()]*)\)")
_REF_ITEM = re.compile(rf"^({_CODE})(?:\.?-)?(?:-({_CODE})(?:\.?-)?)?$")

NOTE_FIELDS = (
    "inclusion_term", "includes", "excludes1", "excludes2",
    "use_additional_code", "code_first", "code_also", "notes", "seven_chr_note",
)


def excludes1_ranges(note: str) -> list[tuple[str, str]]:
    """Code ranges an Excludes1 note names, as (lo, hi) keys without dots.

    `(E08.-)` -> E08 and everything under it; `(N18.1-N18.6)` -> N18.1 .. N18.6 and their
    descendants. A range's hi ends in \x7f so that every descendant of hi sorts below it.
    """
    ranges = []
    for group in _REF_GROUP.findall(note):
        for item in group.split(","):
            m = _REF_ITEM.match(item.strip().replace(" ", ""))
            if not m:
                continue
            lo = m.group(1).replace(".", "")
            hi = (m.group(2) or m.group(1)).replace(".", "")
            ranges.append((lo, hi + "\x7f"))
    return ranges


def _kind(cm, code: str) -> str:
    if cm.is_chapter(code):
        return "chapter"
    if cm.is_block(code):
        return "block"
    if cm.is_category(code):
        return "category"
    if cm.is_extended_subcategory(code):
        return "extended"
    return "subcategory"


def compile_codeset(dest: Path, source_version: str) -> None:
    import simple_icd_10_cm as cm  # noqa: PLC0415 - deliberately lazy

    started = time.perf_counter()
    codes = cm.get_all_codes(with_dots=True)  # pre-order: a subtree is a contiguous run
    con = sqlite3.connect(dest)
    con.executescript(_schema.SCHEMA)
    code_rows, note_rows, range_rows, seven_rows, fts_rows = [], [], [], [], []
    seen: set[str] = set()
    for i, code in enumerate(codes):
        # A one-category block (B10, C7A, ...) shares its name with its category: keep the
        # category, hung directly under the chapter.
        if cm.is_block(code) and cm.is_category(code):
            if code not in seen:
                seen.add(code)
                continue
            kind, parent = "category", cm.get_parent(code, prioritize_blocks=True)
        else:
            kind, parent = _kind(cm, code), cm.get_parent(code) or None
        n_desc = len(cm.get_descendants(code))
        billable = int(kind not in ("chapter", "block") and cm.is_leaf(code))
        description = cm.get_description(code)
        code_rows.append((code, kind, description, parent, billable, i, i + n_desc))
        if kind not in ("chapter", "block"):
            fts_rows.append((description, code, "description"))
        for field in NOTE_FIELDS:
            value = getattr(cm, f"get_{field}")(code)
            texts = value if isinstance(value, list) else ([value] if value else [])
            for text in texts:
                note_rows.append((code, field, text))
                if field == "inclusion_term" and kind not in ("chapter", "block"):
                    fts_rows.append((text, code, "inclusion_term"))
                if field == "excludes1":
                    range_rows.extend((code, lo, hi, text) for lo, hi in excludes1_ranges(text))
        for char, meaning in cm.get_seven_chr_def(code).items():
            seven_rows.append((code, char, meaning))
    con.executemany("INSERT INTO codes VALUES (?,?,?,?,?,?,?)", code_rows)
    con.executemany("INSERT INTO notes VALUES (?,?,?)", note_rows)
    con.executemany("INSERT INTO excludes1_ranges VALUES (?,?,?,?)", range_rows)
    con.executemany("INSERT INTO seven_chr VALUES (?,?,?)", seven_rows)
    con.executemany("INSERT INTO search_fts(text, code, field) VALUES (?,?,?)", fts_rows)
    con.execute("INSERT INTO search_fts(search_fts) VALUES ('optimize')")
    meta = {
        "schema": str(_schema.SCHEMA_VERSION),
        "source": "simple-icd-10-cm",
        "source_version": source_version,
        "edition": _schema.EDITION,
        "n_codes": str(sum(1 for r in code_rows if r[1] not in ("chapter", "block"))),
        "n_billable": str(sum(r[4] for r in code_rows)),
        "compile_seconds": f"{time.perf_counter() - started:.1f}",
    }
    con.executemany("INSERT INTO meta VALUES (?,?)", meta.items())
    con.commit()
    con.execute("VACUUM")
    con.close()
