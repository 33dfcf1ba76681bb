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


def best_clause(note: str, phrase: str, min_overlap: float = 0.5) -> tuple[int, int] | None:
    """The clause sharing most content words with `phrase` (e.g. a code's description)."""
    wanted = {stem(w) for w in content_words(phrase)}
    if not wanted:
        return None
    best, best_score = None, 0.0
    for start, end in clauses(note):
        have = {stem(w) for w in content_words(note[start:end])}
        score = len(wanted & have) / len(wanted)
        if score > best_score:
            best, best_score = (start, end), score
    return best if best_score >= min_overlap else None
