"""Where in the note a code is supported: locate a quoted span, or find the best clause."""
from __future__ import annotations

import re

from .codeset import content_words, stem
from .retrieve import clauses


def locate(note: str, quote: str) -> tuple[int, int] | None:
    """Span of `quote` in the note: exact, then case- and whitespace-insensitive."""
    quote = (quote or "").strip()
    if not quote:
        return None
    idx = note.find(quote)
    if idx >= 0:
        return idx, idx + len(quote)
    pattern = r"\s+".join(re.escape(w) for w in quote.split())
    m = re.search(pattern, note, flags=re.I)
    return (m.start(), m.end()) if m else None


# Words of ICD-10-CM wording that say nothing about which condition it is.
_BOILERPLATE = {stem(w) for w in ("unspecified", "specified", "other", "organism", "site", "part",
                                  "elsewhere", "classified", "mention", "complication", "without",
                                  "type", "condition", "disorder")}


def key_words(text: str) -> set[str]:
    return {stem(w) for w in content_words(text)} - _BOILERPLATE


def supports(quote: str, wordings: list[str]) -> bool:
    """Does a quote share a meaningful word with any wording of the code? A model may quote the
    note correctly but about another condition; such a quote is not evidence for this code."""
    have = key_words(quote)
    return any(have & key_words(w) for w in wordings)


def overlap(text: str, phrase: str) -> float:
    """Share of the phrase's meaningful words found in the text."""
    wanted = key_words(phrase)
    return len(wanted & key_words(text)) / len(wanted) if wanted else 0.0


def best_clause(note: str, phrase: str, min_overlap: float = 0.5) -> tuple[int, int] | None:
    """The clause sharing most content words with `phrase` (e.g. a code's description)."""
    wanted = key_words(phrase)
    if not wanted:
        return None
    best, best_score = None, 0.0
    for start, end in clauses(note):
        score = len(wanted & key_words(note[start:end])) / len(wanted)
        if score > best_score:
            best, best_score = (start, end), score
    return best if best_score >= min_overlap else None
