"""ICD-10-CM FY2026: look-up, validation, hierarchy, Excludes1 and word search.

The code set is compiled once from `simple-icd-10-cm` into a SQLite file (with an FTS5 index)
in the per-user cache, keyed by the source package's version. Opening that cache never imports
simple-icd-10-cm.

    >>> cs = load()
    >>> cs.normalize(" e119 ")
    'E11.9'
    >>> cs.is_billable("E11.22")
    True
"""
from __future__ import annotations

import re
import sqlite3
import threading
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ..errors import CoderError
from ..files import atomic_path, cache_dir
from ..text import (
    bracket_alternatives,
    content_words,
    essential_stems,
    negated_stems,
    only_negated_stems,
    stem,
    stems,
    synonym_phrases,
)
from . import _schema

EDITION = _schema.EDITION
_SOURCE_PACKAGE = "simple-icd-10-cm"
_CODE_RE = re.compile(r"^[A-Z][0-9][0-9A-Z]([0-9A-Z]{1,4})?$")


_MAX_MATCH_DF = 3000


class CodeSetError(CoderError):
    """Base class for code-set errors; the message says what to do."""


class InvalidCodeFormat(CodeSetError, ValueError):
    """The text cannot be an ICD-10-CM code at all."""


class UnknownCode(CodeSetError, KeyError):
    """Well-formed, but not a code of this edition."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Excludes1:
    """An Excludes1 note that applies to a code (possibly inherited from an ancestor)."""

    source: str  # the code (or block) the note is written on
    note: str


@dataclass(frozen=True)
class SearchHit:
    code: str
    description: str
    score: float
    matched: str  # the description or inclusion term that matched
    billable: bool
    covered: float = 0.0  # IDF-weighted share of the matched text's words found in the query


@dataclass
class CodeRecord:
    code: str
    kind: str
    description: str
    billable: bool
    parent: str | None
    ancestors: list[str]
    children: list[str]
    inclusion_terms: list[str] = field(default_factory=list)
    includes: list[str] = field(default_factory=list)
    excludes1: list[str] = field(default_factory=list)
    excludes2: list[str] = field(default_factory=list)
    use_additional_code: list[str] = field(default_factory=list)
    code_first: list[str] = field(default_factory=list)
    code_also: list[str] = field(default_factory=list)
    seven_chr_def: dict[str, str] = field(default_factory=dict)
    edition: str = EDITION

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def normalize(raw: str) -> str:
    """`e119`, `E11.9`, ` e11.9 ` -> `E11.9`. Raises InvalidCodeFormat for anything else.

    Only the shape is checked here; `CodeSet.is_valid` says whether the code exists.
    """
    if not isinstance(raw, str):
        raise InvalidCodeFormat(f"An ICD-10-CM code must be text, got {type(raw).__name__}.")
    compact = raw.strip().upper().replace(".", "", 1)
    if not _CODE_RE.match(compact):
        shown = raw if len(raw) <= 40 else raw[:40] + "..."
        raise InvalidCodeFormat(
            f"{shown!r} is not an ICD-10-CM code: expected a letter, two characters and up to "
            "four more, e.g. E11.9 or S72.001A."
        )
    return compact if len(compact) == 3 else f"{compact[:3]}.{compact[3:]}"


def code_key(code: str) -> str:
    """Sort/range key of a normalized code: no dot."""
    return code.replace(".", "")


class CodeSet:
    """Read-only view of the compiled code set. Thread-safe: one connection per thread."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()
        meta = dict(self._con.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("schema") != str(_schema.SCHEMA_VERSION):
            raise CodeSetError(
                f"Code-set cache {self.path} has schema {meta.get('schema')}, expected "
                f"{_schema.SCHEMA_VERSION}. Delete it and it will be rebuilt."
            )
        self.meta = meta
        self.edition = meta["edition"]
        self.source_version = meta["source_version"]
        self._content_sha256: str | None = None

    @property
    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            uri = f"file:{self.path}?mode=ro&immutable=1"
            con = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._local.con = con
        return con

    # --- look-up -----------------------------------------------------------------------
    normalize = staticmethod(normalize)

    @lru_cache(maxsize=65536)
    def _row(self, code: str):
        return self._con.execute(
            "SELECT code, kind, description, parent, billable, ord, last_ord FROM codes WHERE code = ?",
            (code,),
        ).fetchone()

    def _lookup(self, code: str):
        """Row of a code given in any accepted spelling; raises UnknownCode."""
        try:
            norm = normalize(code)
        except InvalidCodeFormat:
            # Blocks (E08-E13) and chapters (4) are nodes of the hierarchy too.
            row = self._row(code.strip().upper()) if isinstance(code, str) else None
            if row is None:
                raise
            return row
        row = self._row(norm)
        if row is None:
            raise UnknownCode(
                f"{norm} is not a code in {self.edition}. Search by words to find the right code."
            )
        return row

    def is_valid(self, code: str) -> bool:
        """True for any code of the edition (billable or a category/subcategory header)."""
        try:
            return self._row(normalize(code)) is not None
        except InvalidCodeFormat:
            return False

    def is_billable(self, code: str) -> bool:
        try:
            row = self._row(normalize(code))
        except InvalidCodeFormat:
            return False
        return bool(row and row[4])

    def description(self, code: str) -> str:
        return self._lookup(code)[2]

    def parent(self, code: str) -> str | None:
        return self._lookup(code)[3]

    def ancestors(self, code: str, include_groups: bool = False) -> list[str]:
        """Ancestors nearest first; blocks and chapters only with include_groups."""
        out, row = [], self._lookup(code)
        while row[3]:
            row = self._row(row[3])
            if include_groups or row[1] not in ("block", "chapter"):
                out.append(row[0])
        return out

    def chapters(self) -> list[str]:
        """The chapters, in order ("1" .. "22"); `description` gives their titles."""
        return [r[0] for r in self._con.execute(
            "SELECT code FROM codes WHERE kind = 'chapter' ORDER BY ord")]

    def children(self, code: str) -> list[str]:
        row = self._lookup(code)
        return [r[0] for r in self._con.execute(
            "SELECT code FROM codes WHERE parent = ? ORDER BY ord", (row[0],))]

    def billable_descendants(self, code: str) -> list[str]:
        """The billable codes under `code` (itself if it is billable)."""
        row = self._lookup(code)
        return [r[0] for r in self._con.execute(
            "SELECT code FROM codes WHERE ord >= ? AND ord <= ? AND billable = 1 ORDER BY ord",
            (row[5], row[6]))]

    @lru_cache(maxsize=16384)
    def seventh_variants(self, code: str) -> dict[str, tuple[str, str]]:
        """For a code with a 7th character (S93.491S), or one that lacks only that (S93.491,
        T14.90): {7th character: (billable code, its meaning)} in the order the code set lists
        the characters. Empty for any other code."""
        try:
            key = code_key(normalize(code))
        except InvalidCodeFormat:
            return {}
        if len(key) < 4:
            return {}
        stem_ = key[:6] if len(key) == 7 else key.ljust(6, "X")
        prefix = f"{stem_[:3]}.{stem_[3:]}"
        found = {c[-1]: c for (c,) in self._con.execute(
            "SELECT code FROM codes WHERE code > ? AND code < ? AND kind = 'extended' AND billable = 1",
            (prefix, prefix + "\x7f")) if len(c) == len(prefix) + 1}
        if not found:
            return {}
        for owner in self.ancestors(next(iter(found.values()))):
            meanings = self._con.execute(
                "SELECT char, meaning FROM seven_chr WHERE code = ? ORDER BY rowid", (owner,)).fetchall()
            if meanings:
                return {char: (found[char], meaning) for char, meaning in meanings if char in found}
        return {}

    def _notes(self, code: str, field_name: str) -> list[str]:
        return [r[0] for r in self._con.execute(
            "SELECT text FROM notes WHERE code = ? AND field = ? ORDER BY rowid", (code, field_name))]

    def notes_of(self, field_name: str, kind: str) -> list[tuple[str, str]]:
        """(code, note) for every note of one field on the codes of one kind ("category"), in
        code order and each code's notes in order: in one query what reading `record` of every
        code would give (that takes seconds)."""
        return self._con.execute(
            "SELECT c.code, n.text FROM notes n JOIN codes c ON c.code = n.code "
            "WHERE n.field = ? AND c.kind = ? ORDER BY c.ord, n.rowid", (field_name, kind)).fetchall()

    def descriptions_containing(self, text: str) -> list[tuple[str, str]]:
        """(code, description) of every code whose description holds `text`, any case, in one
        query."""
        pattern = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return self._con.execute("SELECT code, description FROM codes WHERE description LIKE ? "
                                 "ESCAPE '\\' ORDER BY ord", (f"%{pattern}%",)).fetchall()

    def inclusion_terms(self, code: str, inherited: bool = False) -> list[str]:
        """The code's inclusion terms; `inherited`: also those of its ancestors below the
        category, which hold for every code under them (S93.49's "Sprain of talofibular
        ligament" for S93.491A)."""
        code = self._lookup(code)[0]
        owners = [code, *self.ancestors(code)[:-1]] if inherited else [code]
        return [term for owner in owners for term in self._notes(owner, "inclusion_term")]

    def includes(self, code: str) -> list[str]:
        """The code's own Includes note: conditions it holds, as a category's inclusion terms
        ("high blood pressure" at I10), less the cross-references ("any condition classifiable
        to I70.218 ...")."""
        code = self._lookup(code)[0]
        return [t for t in self._notes(code, "includes") if not t.lower().startswith("any condition")]

    def excludes1(self, code: str) -> list[Excludes1]:
        """Excludes1 notes on the code and on every ancestor (they apply to descendants)."""
        row = self._lookup(code)
        chain = [row[0]] + self.ancestors(row[0], include_groups=True)
        return [Excludes1(c, n) for c in chain for n in self._notes(c, "excludes1")]

    def excludes1_conflict(self, a: str, b: str) -> Excludes1 | None:
        """The Excludes1 note that forbids coding `a` together with `b`, or None."""
        for first, second in ((a, b), (b, a)):
            row = self._lookup(first)
            chain = [row[0]] + self.ancestors(row[0], include_groups=True)
            key = code_key(self._lookup(second)[0])
            marks = ",".join("?" * len(chain))
            hit = self._con.execute(
                f"SELECT code, note FROM excludes1_ranges WHERE code IN ({marks}) "
                "AND lo <= ? AND ? <= hi LIMIT 1", (*chain, key, key)).fetchone()
            if hit:
                return Excludes1(hit[0], hit[1])
        return None

    def record(self, code: str) -> CodeRecord:
        code_, kind, description, parent, billable, _, _ = self._lookup(code)
        notes: dict[str, list[str]] = {}
        for f, text in self._con.execute(
                "SELECT field, text FROM notes WHERE code = ? ORDER BY rowid", (code_,)):
            notes.setdefault(f, []).append(text)
        seven = dict(self._con.execute(
            "SELECT char, meaning FROM seven_chr WHERE code = ?", (code_,)).fetchall())
        return CodeRecord(
            code=code_, kind=kind, description=description, billable=bool(billable),
            parent=parent, ancestors=self.ancestors(code_), children=self.children(code_),
            inclusion_terms=notes.get("inclusion_term", []), includes=notes.get("includes", []),
            excludes1=notes.get("excludes1", []), excludes2=notes.get("excludes2", []),
            use_additional_code=notes.get("use_additional_code", []),
            code_first=notes.get("code_first", []), code_also=notes.get("code_also", []),
            seven_chr_def=seven, edition=self.edition,
        )

    def content_sha256(self) -> str:
        """sha256 of every code with its kind, billable flag and description, in order: two
        compiles of the same edition agree even where the SQLite files differ byte for byte."""
        if self._content_sha256 is None:
            import hashlib  # noqa: PLC0415

            digest = hashlib.sha256()
            for code, kind, billable, desc in self._con.execute(
                    "SELECT code, kind, billable, description FROM codes ORDER BY ord"):
                digest.update(f"{code}\t{kind}\t{billable}\t{desc}\n".encode())
            self._content_sha256 = digest.hexdigest()
        return self._content_sha256

    def all_codes(self, billable_only: bool = True) -> list[str]:
        sql = "SELECT code FROM codes WHERE kind NOT IN ('chapter', 'block')"
        if billable_only:
            sql += " AND billable = 1"
        return [r[0] for r in self._con.execute(sql + " ORDER BY ord")]

    # --- search ------------------------------------------------------------------------
    def search(self, text: str, limit: int = 20, billable_only: bool = False) -> list[SearchHit]:
        """Codes whose description or inclusion terms match `text`, best first.

        A code-like query (`E11.2`, `e112`) lists that code and its descendants instead.
        """
        text = (text or "").strip()
        if not text:
            return []
        try:
            row = self._row(normalize(text))
        except InvalidCodeFormat:
            row = None
        if row is not None:
            return self._code_prefix_hits(row, limit, billable_only)
        words = content_words(text)
        if not words:
            return []
        # Words in thousands of entries (left, right, acute) cost much and rank little: match on
        # the rarer words, and let the re-ranking below still reward covering the frequent ones.
        unique = sorted(dict.fromkeys(words + synonym_phrases(text)), key=self._doc_freq)
        kept = [w for w in unique if self._doc_freq(w) <= _MAX_MATCH_DF] or unique[:1]
        # FTS5's bm25 over the matching entries, best 400 (models/codeset/_bm25.py).
        rowids, ranks = (found.tolist() for found in self._ranking.top(kept, 400))
        if not rowids:
            return []
        wanted = stems(text)
        absent = negated_stems(text)
        best_bm25 = -ranks[0] or 1.0
        best: dict[str, tuple[float, str, str, int]] = {}  # code -> its best-scoring entry
        for rowid, bm25 in zip(rowids, ranks):
            code, matched, description, billable = self._search_entries[rowid]
            if billable_only and not billable:
                continue
            # With and without are one word apart: "Migraine without aura" is not G43.1 (with
            # aura), "Parkinson disease with dyskinesia" not G20.A1 (without).
            if absent & (stems(matched) - negated_stems(matched)) or only_negated_stems(matched) & (wanted - absent):
                continue
            common = len(wanted & stems(matched))
            # Reward covering the query, penalise words the entry needs that the query lacks (not
            # its nonessential modifiers nor "unspecified organism": a note that says just
            # "pneumonia" is coded J18.9, not typhoid pneumonia), in whichever of its names.
            needed = max(len(wanted & n) / len(n) for n in _needed(matched))
            score = (2.0 * common / len(wanted) + 1.0 * needed + 0.5 * (-bm25) / best_bm25 + 0.05 * billable)
            if code not in best or score > best[code][0]:
                best[code] = (round(score, 4), matched, description, billable)
        # Coverage only for the hits returned: it costs more than the score.
        top = sorted(best.items(), key=lambda kv: -kv[1][0])[:limit]
        return [SearchHit(code, description, score, matched, bool(billable), self._covered(matched, wanted))
                for code, (score, matched, description, billable) in top]

    @lru_cache(maxsize=262144)
    def _weighted_stems(self, text: str) -> tuple[tuple[str, float], ...]:
        """(stem, idf) of a description's content words; rare words weigh more."""
        import math

        n = 110_000  # entries in the search index, order of magnitude is what matters
        out = {}
        for w in content_words(text):
            out[stem(w)] = max(out.get(stem(w), 0.0), math.log(n / (1 + self._doc_freq(w))))
        return tuple(out.items())

    def _covered(self, matched: str, wanted: frozenset[str]) -> float:
        """IDF-weighted share of what the entry needs (essential_stems) that the query has, in
        whichever of its names (a bracketed one too: "Croup" covers J05.0's "[croup]")."""
        return max(self._covered_by(name, wanted) for name in _names(matched))

    def _covered_by(self, name: str, wanted: frozenset[str]) -> float:
        needed = essential_stems(name)
        weighted = [(s, w) for s, w in self._weighted_stems(name) if s in needed]
        total = sum(w for _, w in weighted)
        return round(sum(w for s, w in weighted if s in wanted) / total, 4) if total else 0.0

    def _doc_freq(self, word: str) -> int:
        return self._ranking.doc_freq(word)

    def prepare_search(self) -> None:
        """Read what `search` ranks with now (about 0.3 s, once per process), so that a note's
        first search is no slower than the rest."""
        self._ranking, self._search_entries  # noqa: B018  (reading them loads them)

    @cached_property
    def _ranking(self):
        from ._bm25 import Bm25Index  # noqa: PLC0415  (numpy: not for opening the code set)

        return Bm25Index(self.path)

    @cached_property
    def _search_entries(self) -> dict[int, tuple[str, str, str, int]]:
        """(code, text, description, billable) of each search entry by rowid: read once (0.2 s),
        as looking up the 400 best of every search cost more than ranking them."""
        return {rowid: tuple(entry) for rowid, *entry in self._con.execute(
            "SELECT f.rowid, f.code, f.text, c.description, c.billable FROM search_fts f "
            "JOIN codes c ON c.code = f.code")}

    def _code_prefix_hits(self, row, limit: int, billable_only: bool) -> list[SearchHit]:
        sql = "SELECT code, description, billable FROM codes WHERE ord >= ? AND ord <= ?"
        if billable_only:
            sql += " AND billable = 1"
        hits = self._con.execute(sql + " ORDER BY ord LIMIT ?", (row[5], row[6], limit)).fetchall()
        return [SearchHit(c, d, 1.0, d, bool(b)) for c, d, b in hits]


def _names(matched: str) -> tuple[str, ...]:
    """An entry's names: its own words, and the bracketed name in place of what it names
    ("Acute obstructive laryngitis [croup]" is also "croup")."""
    return (matched, *bracket_alternatives(matched))


@lru_cache(maxsize=262144)
def _needed(matched: str) -> tuple[frozenset[str], ...]:
    """What an entry asks the query for (`essential_stems`), once per name it has."""
    return tuple(essential_stems(name) for name in _names(matched))


def source_version() -> str:
    try:
        return version(_SOURCE_PACKAGE)
    except PackageNotFoundError as exc:
        raise CodeSetError(
            f"The code set comes from the Python package {_SOURCE_PACKAGE}, which is not "
            "installed and no compiled cache was found. Run `make setup` (or "
            f"`pip install {_SOURCE_PACKAGE}`)."
        ) from exc


def default_path() -> Path:
    """Cache file for the installed source version (or a prebuilt one in ICD10_CODER_CODESET)."""
    import os

    explicit = os.environ.get("ICD10_CODER_CODESET")
    if explicit:
        return Path(explicit)
    return cache_dir() / f"codeset-{_SOURCE_PACKAGE}-{source_version()}-s{_schema.SCHEMA_VERSION}.sqlite"


def ensure_compiled(path: Path | None = None) -> Path:
    """Compile the cache if it does not exist yet; return its path."""
    path = Path(path) if path else default_path()
    if not path.exists():
        from ._compile import compile_codeset  # noqa: PLC0415

        with atomic_path(path) as tmp:
            tmp.unlink()  # sqlite wants to create the file itself
            compile_codeset(tmp, source_version())
    return path


_loaded: dict[Path, CodeSet] = {}
_load_lock = threading.Lock()


def load(path: str | Path | None = None) -> CodeSet:
    """The code set, compiled on first use and shared within the process."""
    with _load_lock:
        resolved = ensure_compiled(Path(path) if path else None)
        if resolved not in _loaded:
            _loaded[resolved] = CodeSet(resolved)
        return _loaded[resolved]
