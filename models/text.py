"""The note's text helpers, in one place: words, stems, clauses and negation, quotes.

Retrieval, evidence and the code set's search all read a note through these, so a change to
what counts as a word or a negated clause changes them all alike.
"""
from __future__ import annotations

import re
from functools import lru_cache

WORD_RE = re.compile(r"[a-z0-9]+")  # a word, in lower-cased text
# Words too common in code descriptions to help ranking (and "unspecified" must not decide).
_STOPWORDS = frozenset(
    "a an and as at by for from in into is of on or other the to with due "
    "unspecified specified nos nec type without complications".split()
)


def stem(word: str) -> str:
    """A light stemmer for ranking: diabetes/diabetic -> diabet, kidneys -> kidney."""
    for suffix in ("ies", "es", "ic", "al", "s", "ed", "ing"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> list[str]:
    return [w for w in WORD_RE.findall(text.lower()) if w not in _STOPWORDS]


@lru_cache(maxsize=262144)
def stems(text: str) -> frozenset[str]:
    """Stemmed content words of a text (cached: code descriptions repeat across searches)."""
    return frozenset(stem(w) for w in content_words(text))


# Words of ICD-10-CM wording that say nothing about which condition it is.
_BOILERPLATE = {stem(w) for w in ("unspecified", "specified", "other", "organism", "site", "part",
                                  "elsewhere", "classified", "mention", "complication", "without",
                                  "type", "condition", "disorder")}


def key_words(text: str) -> set[str]:
    """The stems that say which condition a text is about."""
    return {stem(w) for w in content_words(text)} - _BOILERPLATE


_SENTENCE = re.compile(r"[^\n.;]+(?:[.;]|$)", re.M)
_CLAUSE_SPLIT = re.compile(r",|\bbut\b|\bwhile\b|\bwith no\b", re.I)
# A negation cue among a clause's first words ("He denies...", "There was no...").
_NEGATION = re.compile(
    r"^\W*(?:[a-z]+\W+){0,3}?(?:no|not|denies|denied|deny|without|negative for|ruled out|"
    r"rules out|excluded|free of|absence of|absent|never had)\b", re.I)


def clauses(note: str):
    """(start, end) spans of the note's clauses, in order, negated ones excluded."""
    for sent in _SENTENCE.finditer(note):
        offset = sent.start()
        for piece in _CLAUSE_SPLIT.split(sent.group()):
            idx = note.find(piece, offset)
            offset = idx + len(piece)
            if len(piece.strip()) < 3 or _NEGATION.match(piece):
                continue
            lead = len(piece) - len(piece.lstrip())
            yield idx + lead, idx + len(piece.rstrip())


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
