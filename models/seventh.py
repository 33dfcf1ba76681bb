"""The 7th character a note supports: the encounter of an injury, the healing of a fracture.

ICD-10-CM appends a 7th character to injury, poisoning, fracture and some other codes, with a
meaning the code set defines per category ("initial encounter", "subsequent encounter for
fracture with delayed healing", "sequela", "moderate stage"). Two codes that differ only in it
name the same condition, so a search that finds one finds whichever wording scores best
("sequela" is shortest), not the one the note states. This module reads the note's
sentences for each meaning and picks the character the note supports. Where the note states none,
the one the code set calls unspecified ("unspecified eye", "not applicable or unspecified"), else
the first it lists: "initial encounter" (the patient receives active treatment), "initial
encounter for closed fracture" (the guidelines' default for a fracture not called open).
"""
from __future__ import annotations

import re
from collections import Counter

from .codeset import CodeSet
from .text import NONESSENTIAL, WORD_RE, sentences, stem

_FILLER = frozenset("a an and as at by for from in into is of on or the to with".split())


# Shorthand for the words 7th characters are made of: "w/o tophus", "L eye", "b/l".
_SHORTHAND = ((re.compile(r"\bw/o\b"), " without "), (re.compile(r"\bw/"), " with "),
              (re.compile(r"\bb/l\b"), " bilateral "))
_SIDES = {"r": "right", "l": "left"}


def _words(text: str) -> list[str]:
    """Stems of a text's words, less fillers and nonessential modifiers ("with tophus (tophi)")."""
    text = NONESSENTIAL.sub(" ", text.lower())
    for shorthand, words in _SHORTHAND:
        text = shorthand.sub(words, text)
    return [stem(_SIDES.get(w, w)) for w in WORD_RE.findall(text) if w not in _FILLER]


def _units(words: list[str]) -> set[tuple[str, ...]]:
    """What of a meaning a note can state: its adjacent word pairs ("initial encounter", "open
    fracture", "routine heal"), or its one word ("sequela"). A single word of a longer meaning
    says too little: "subsequent" in "a subsequent CT", "open" in "open reduction"."""
    if len(words) == 1:
        return {(words[0],)}
    return {tuple(words[i:i + 2]) for i in range(len(words) - 1)}


class NoteEncounter:
    """A note's word pairs, read once and asked for each code with a 7th character."""

    def __init__(self, note: str):
        self.grams: set[tuple[str, ...]] = set()
        # Every sentence, negated clauses too: a 7th character's words are qualifiers that
        # follow a negation as often as not ("retinopathy without macular edema, left eye").
        for start, end in sentences(note):
            words = _words(note[start:end])
            self.grams |= {(w,) for w in words}
            self.grams |= {tuple(words[i:i + 2]) for i in range(len(words) - 1)}

    def support(self, meanings: dict[str, str]) -> dict[str, tuple[int, int]]:
        """For each character: how many words of its meaning the note states in units (`_units`;
        "without tophus" outweighs "tophus" of "with tophus"), then how many of its words that
        fewer than half of the meanings share ("nonunion", "routine": they tell apart meanings
        the same pair, "subsequent encounter", leaves tied)."""
        worded = {char: _words(meaning) for char, meaning in meanings.items()}
        shared = Counter(w for words in worded.values() for w in set(words))
        return {char: (sum(map(len, _units(words) & self.grams)),
                       sum((w,) in self.grams for w in set(words) if 2 * shared[w] < len(worded)))
                for char, words in worded.items()}

    def supported_code(self, cs: CodeSet, code: str) -> str:
        """`code` with the 7th character the note supports best: `code` itself where no other is
        supported better, else the first the code set lists among the best (`_default` where the
        note states none). A code without a 7th character is returned as is."""
        variants = cs.seventh_variants(code)
        if not variants:
            return code
        support = self.support({char: meaning for char, (_, meaning) in variants.items()})
        best = max(support.values())
        if best[0] == 0:  # a rare word alone ("open" of "open reduction") states no meaning
            return variants[_default(variants)][0]
        found = next((char for char, (variant, _) in variants.items() if variant == code), None)
        if found is not None and support[found] == best:
            return code  # as well supported as any other: the clause it was found in decides
        return next(variants[char][0] for char, n in support.items() if n == best)


def _default(variants: dict[str, tuple[str, str]]) -> str:
    """The character for a note that states none: the one the code set calls unspecified ("unspecified
    eye", "not applicable or unspecified"), else the first it lists ("initial encounter")."""
    return next((char for char, (_, meaning) in variants.items() if "unspecified" in meaning.lower()),
                next(iter(variants)))
