"""Coding rules applied after selection: which of the selected codes a coder would not report.

`apply(selected, cs)` is a pure function of the selected codes and the code set: no note, no
model, no per-code list. Every decision is read from the code set's own data (descriptions, the
hierarchy, block and chapter titles, Excludes and "Use additional code" notes). It returns the
codes kept, in their order, the dropped ones as `Rejected(code, reason)`, and the generic codes
kept beside a less sure specific one (`outranked`), which the pipeline flags.

A code is dropped only for a code selected with at least its probability (the pipeline passes the
confidence, halved when the note holds no evidence): a coder reports the specific diagnosis, and
leaves out its symptoms, once that diagnosis is established; one the selector is less sure of than
the generic code or the symptom does not displace them. (On CodiEsp dev, whose annotators code
every mention, symptoms beside their diagnosis included, the rules without this condition cost
4.5 points of micro-F1, with it 1.1.)

The reasons are plain strings:

`less_specific` (LESS_SPECIFIC)
    A code that says "unspecified", "without complications" or "uncomplicated" (E11.9) is dropped
    when another selected code below the same parent says more (E11.22, under E11): the specific
    code already reports the condition. Where the specific code is the less sure of the two, both
    stay and the generic one is flagged (`Applied.outranked`): they contradict each other, and the
    coder decides. "Below the same parent" rather than "same first three
    characters": a category can hold unrelated conditions (E87.1 hyponatremia and E87.20 acidosis,
    unspecified are both E87), a parent's subtree is one condition.

`integral_symptom` (INTEGRAL_SYMPTOM)
    A sign or symptom of chapter 18 (R00-R99) is dropped beside a definitive diagnosis of the body
    system it belongs to (R05.9 cough beside J18.9 pneumonia): signs and symptoms routinely
    associated with a disease process are not coded with it. The body system is read from titles:
    a block "Symptoms and signs involving the circulatory and respiratory systems" names the
    chapters whose titles hold those words ("Diseases of the respiratory system"), counting only
    words that appear in one chapter title (so "system" and "tissue" name none). When the block
    names two systems, the code's own Excludes notes (on it and its ancestors up to the block)
    decide between them: R05 (cough) excludes J41.0 (smoker's cough), so it is respiratory and
    stays beside I10 (hypertension); a code whose notes point at neither system stays. It is kept
    whenever the diagnosis (or an ancestor) asks for it ("Use additional code for associated
    symptoms ... urinary retention (R33.8)" on N40.1).
    Not dropped: the blocks whose titles name no system, among them R50-R69 "General symptoms and
    signs" (fever, fatigue, pain, edema: which disease makes them integral is not in the data),
    R40-R46 (cognition, emotional state: suicidal ideation is coded beside depression) and the
    abnormal findings R70-R99, which their titles already limit to "without diagnosis".
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

from .codeset import CodeSet, UnknownCode, code_key
from .codeset._compile import excludes1_ranges as note_ranges
from .contract import Rejected
from .text import content_words, stem

__all__ = ["INTEGRAL_SYMPTOM", "LESS_SPECIFIC", "Applied", "apply"]

LESS_SPECIFIC = "less_specific"
INTEGRAL_SYMPTOM = "integral_symptom"

_GENERIC = re.compile(r"\bunspecified\b|\bwithout complications?\b|\buncomplicated\b", re.I)
_SYMPTOM_BLOCK = re.compile(r"^symptoms and signs involving the (.+?)(?:\s*\([^()]*\))?$", re.I)
_RANGE = re.compile(r"\s*\([^()]*\)$")  # "(J00-J99)" after a title


class Applied(NamedTuple):
    kept: list[tuple[str, float]]
    dropped: list[Rejected]
    # A generic code kept because the more specific code beside it is less sure: code -> those
    # codes. The two contradict each other (E11.9 "without complications" beside E11.22): the
    # pipeline flags both for the coder rather than guess which one the note means.
    outranked: dict[str, list[str]]


def apply(selected: list[tuple[str, float]], cs: CodeSet) -> Applied:
    """The selected (code, probability) pairs a coder would report, and the rest with a reason.
    Codes the code set does not know are kept as they are (validation reports them)."""
    prob = {c: p for c, p in selected if cs.is_valid(c)}
    drop: dict[str, str] = {}
    outranked: dict[str, list[str]] = {}
    for code in prob:
        specific = [other for other in prob if other != code and _more_specific(cs, other, code)]
        if any(prob[other] >= prob[code] for other in specific):
            drop[code] = LESS_SPECIFIC
        elif specific:
            outranked[code] = specific
    diagnoses = [c for c in prob if c not in drop]
    for code in prob:
        systems = _symptom_systems(cs, cs.normalize(code)) if code not in drop else None
        if systems and any(prob[d] >= prob[code] and _chapter(cs, d) in systems
                           and not _asks_for(cs, d, code) for d in diagnoses if d != code):
            drop[code] = INTEGRAL_SYMPTOM
    kept_specific = {c: [o for o in others if o not in drop] for c, others in outranked.items() if c not in drop}
    return Applied([(c, p) for c, p in selected if c not in drop],
                   [Rejected(c, drop[c]) for c, _ in selected if c in drop],
                   {c: others for c, others in kept_specific.items() if others})


# --- less specific --------------------------------------------------------------------------
def _more_specific(cs: CodeSet, other: str, code: str) -> bool:
    """Does `other` report `code`'s condition with more detail? `code` must say it is generic,
    `other` sit below `code`'s parent and either not say so or sit deeper."""
    if not _GENERIC.search(cs.description(code)):
        return False
    parent = next(iter(cs.ancestors(code)), None)
    if parent is None or parent not in cs.ancestors(other) or code in cs.ancestors(other) + [other]:
        return False
    return (not _GENERIC.search(cs.description(other))
            or len(code_key(other)) > len(code_key(code)))


# --- integral symptoms ----------------------------------------------------------------------
def _groups(cs: CodeSet, code: str) -> list[str]:
    """The blocks above a code, nearest first, then its chapter."""
    plain = set(cs.ancestors(code))
    return [a for a in cs.ancestors(code, include_groups=True) if a not in plain]


@lru_cache(maxsize=65536)
def _chapter_of(cs: CodeSet, code: str) -> str | None:
    groups = _groups(cs, code)
    return groups[-1] if groups else None


def _chapter(cs: CodeSet, code: str) -> str | None:
    return _chapter_of(cs, cs.normalize(code))


@lru_cache(maxsize=8)
def _chapter_words(cs: CodeSet) -> dict[str, str]:
    """Word stem -> chapter, for the words that appear in exactly one chapter title."""
    seen: dict[str, set[str]] = {}
    for chapter in cs.chapters():
        for word in content_words(_RANGE.sub("", cs.description(chapter))):
            seen.setdefault(stem(word), set()).add(chapter)
    return {w: next(iter(chs)) for w, chs in seen.items() if len(chs) == 1}


@lru_cache(maxsize=65536)
def _symptom_systems(cs: CodeSet, code: str) -> frozenset[str]:
    """The chapters of the body systems a sign or symptom belongs to: none for a code outside a
    "Symptoms and signs involving the ..." block, or where the titles and notes do not say."""
    groups = _groups(cs, code)
    words = _chapter_words(cs)
    named: set[str] = set()
    for block in groups[:-1]:
        m = _SYMPTOM_BLOCK.match(cs.description(block))
        if m:
            named |= {words[stem(w)] for w in content_words(m.group(1)) if stem(w) in words}
    if len(named) > 1:  # two systems in one block: the code's own notes decide
        named &= _excluded_chapters(cs, code, groups)
    return frozenset(named)


def _excluded_chapters(cs: CodeSet, code: str, groups: list[str]) -> set[str]:
    """Chapters that the Excludes1/Excludes2 notes on the code and its ancestors (below its
    block) point into."""
    out: set[str] = set()
    chain = [cs.normalize(code), *cs.ancestors(code)]
    for link in chain:
        record = cs.record(link)
        for note in record.excludes1 + record.excludes2:
            for lo, _ in note_ranges(note):
                target = lo if len(lo) == 3 else f"{lo[:3]}.{lo[3:]}"
                if cs.is_valid(target):
                    chapter = _chapter(cs, target)
                    if chapter and chapter != groups[-1]:
                        out.add(chapter)
    return out


def _asks_for(cs: CodeSet, diagnosis: str, symptom: str) -> bool:
    """Does a "Use additional code" or "Code also" note on the diagnosis (or an ancestor) name the
    symptom's code?"""
    key = code_key(cs.normalize(symptom))
    for link in [cs.normalize(diagnosis), *cs.ancestors(diagnosis)]:
        try:
            record = cs.record(link)
        except UnknownCode:
            continue
        for note in record.use_additional_code + record.code_also:
            if any(lo <= key <= hi for lo, hi in note_ranges(note)):
                return True
    return False
