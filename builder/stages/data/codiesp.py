"""Read a folder in the CodiEsp layout: `text_files_en/<id>.txt` plus a `*D.tsv` of gold codes.

Credit: CodiEsp corpus (CLEF eHealth 2020), Miranda-Escalada et al., CC BY 4.0; see
builder/corpora/codiesp/README.md.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from models.errors import CoderError


class CorpusError(CoderError, ValueError):
    """A corpus folder that cannot be read; the message says what is wrong and what to do."""


@dataclass
class CodiEspCase:
    case_id: str
    text: str
    codes: list[str]  # raw gold codes as written in the tsv (2018 edition, lower case)
    path: Path


@dataclass
class CodiEspSplit:
    name: str
    cases: list[CodiEspCase]
    codes_without_text: dict[str, list[str]] = field(default_factory=dict)


def embedded_dir() -> Path:
    """The CodiEsp train/dev copy shipped with the builder."""
    return Path(str(resources.files("builder") / "corpora" / "codiesp"))


def read_split(folder: str | Path) -> CodiEspSplit:
    folder = Path(folder)
    text_dir = folder / "text_files_en"
    tsvs = sorted(folder.glob("*D.tsv"))
    if not folder.is_dir():
        raise CorpusError(f"{folder} is not a folder. Give a CodiEsp split folder such as "
                          "builder/corpora/codiesp/dev.")
    if not text_dir.is_dir() or not tsvs:
        raise CorpusError(f"{folder} is not in the CodiEsp layout: it needs text_files_en/ and a "
                          "*D.tsv file (articleID<TAB>code).")
    gold: dict[str, list[str]] = {}
    for tsv in tsvs:
        with open(tsv, encoding="utf-8", newline="") as fh:
            for lineno, row in enumerate(csv.reader(fh, delimiter="\t"), 1):
                if not row or not row[0].strip():
                    continue
                if len(row) < 2:
                    raise CorpusError(f"{tsv}:{lineno}: expected articleID<TAB>code, got {row!r}.")
                gold.setdefault(row[0].strip(), []).append(row[1].strip())
    cases = []
    for path in sorted(text_dir.glob("*.txt")):
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = raw.decode("cp1252", errors="replace")
        cases.append(CodiEspCase(path.stem, text, gold.pop(path.stem, []), path))
    return CodiEspSplit(folder.name, cases, codes_without_text=gold)
