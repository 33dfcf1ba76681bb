"""Candidate retrieval: from a note, the codes most worth showing the model.

Sentence and clause level search over the code set (descriptions and inclusion terms), negated
clauses skipped, scores aggregated per billable code with the span of the note that matched.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .codeset import CodeSet
from .contract import Candidate

_SENTENCE = re.compile(r"[^\n.;]+(?:[.;]|$)", re.M)
_CLAUSE_SPLIT = re.compile(r",|\bbut\b|\bwhile\b|\bwith no\b", re.I)
_NEGATION = re.compile(
    r"^\s*(?:no|not|denies|denied|without|negative for|ruled out|rules out|no evidence of|"
    r"free of|absence of|absent|never had)\b", re.I)


@dataclass(frozen=True)
class RetrievedCode:
    code: str
    description: str
    score: float
    start: int  # span of the note that matched best
    end: int

    def as_candidate(self) -> Candidate:
        return Candidate(self.code, self.description)


def clauses(note: str):
    """(start, end) spans of the note's clauses, in order, negated ones excluded."""
    for sent in _SENTENCE.finditer(note):
        start = sent.start()
        pieces = _CLAUSE_SPLIT.split(sent.group())
        offset = start
        for piece in pieces:
            idx = note.find(piece, offset)
            offset = idx + len(piece)
            if len(piece.strip()) < 3 or _NEGATION.match(piece):
                continue
            lead = len(piece) - len(piece.lstrip())
            yield idx + lead, idx + len(piece.rstrip())


def retrieve(note: str, cs: CodeSet, k: int = 20, per_clause: int = 8) -> list[RetrievedCode]:
    best: dict[str, RetrievedCode] = {}
    hits_per_code: dict[str, int] = {}
    for start, end in clauses(note):
        for hit in cs.search(note[start:end], limit=per_clause, billable_only=True):
            hits_per_code[hit.code] = hits_per_code.get(hit.code, 0) + 1
            if hit.code not in best or hit.score > best[hit.code].score:
                best[hit.code] = RetrievedCode(hit.code, hit.description, hit.score, start, end)
    # A code matched by several clauses is more likely meant; cap the bonus.
    ranked = sorted(best.values(),
                    key=lambda r: -(r.score + 0.1 * min(hits_per_code[r.code] - 1, 3)))
    return ranked[:k]
