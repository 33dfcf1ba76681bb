"""Where in the note a code is supported: locate a quoted span, or find the words themselves.

Models answer with codes only, so the words a coder sees highlighted are found here: the clause
that shares most meaningful words with the code's wording, narrowed to the phrase that says it.
"""
from __future__ import annotations

from .text import WORD_RE, clauses, key_words, plural_twins, sentences, stated_stems, stem, word_stems


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


def stated_sentence(note: str, wordings: list[str]) -> tuple[int, int] | None:
    """The first sentence whose affirmed clauses hold every essential word of a wording, from its
    first such clause to its last: "Chronic kidney disease, stage 4 (severe)" is two clauses, so
    no single clause shares enough of N18.4's words for `best_clause`."""
    spans = list(clauses(note))
    wanted = [w for w in (stated_stems(x) for x in wordings) if w]
    for start, end in sentences(note):
        inside = [(a, b) for a, b in spans if start <= a and b <= end]
        if inside:
            words = set().union(*(key_words(note[a:b]) for a, b in inside))
            if any(w <= words for w in wanted):
                return inside[0][0], inside[-1][1]
    return None


def denied(note: str, wordings: list[str], min_overlap: float = 0.6) -> bool:
    """Does the note name the code's condition only where it negates it ("denies chest pain")?
    True when a stretch of the note outside its affirmed clauses shares at least `min_overlap`
    of a wording's meaningful words (callers ask only when no affirmed clause supports the code)."""
    gaps, last = [], 0
    for start, end in clauses(note):
        gaps.append(note[last:start])
        last = end
    gaps.append(note[last:])
    return any(overlap(gap, w) >= min_overlap for gap in gaps if gap.strip() for w in wordings)


def narrow(note: str, span: tuple[int, int], wordings: list[str]) -> tuple[int, int]:
    """The shortest run of words inside `span` holding every meaningful word it shares with the
    best-matching wording, widened over neighbouring words of that wording ("type 2" before
    "diabetes mellitus"). The span itself when nothing matches."""
    start, end = span
    words = [(start + m.start(), start + m.end(), word_stems(m.group()) | set(plural_twins(m.group()).values()))
             for m in WORD_RE.finditer(note[start:end].lower())]
    have = set().union(*(w[2] for w in words))
    # What a wording asks for, without its nonessential modifiers: "Essential (primary)
    # hypertension" is found in "hypertension", not stretched to an unrelated "Primary care".
    wording = max(wordings, key=lambda w: len(stated_stems(w) & have), default="")
    wanted = stated_stems(wording) & have
    if not wanted:
        return span
    best = (0, len(words) - 1)
    for i in range(len(words)):  # few words per clause: quadratic is fine
        if not words[i][2] & wanted:
            continue
        seen: set[str] = set()
        for j in range(i, len(words)):
            seen |= words[j][2]
            if wanted <= seen:
                if j - i < best[1] - best[0]:
                    best = (i, j)
                break
    around = {stem(w) for w in WORD_RE.findall(wording.lower())}
    i, j = best
    while i > 0 and words[i - 1][2] & around:
        i -= 1
    while j + 1 < len(words) and words[j + 1][2] & around:
        j += 1
    return words[i][0], words[j][1]
