"""Bring gold codes from other editions (CodiEsp: 2018) to ICD-10-CM FY2026.

Billable codes are kept. A valid code that was later split is mapped to a billable code only when
the code set makes the choice unambiguous (a single billable descendant, or a single
"..., unspecified" child). Everything else is flagged with a reason and counted, never dropped
silently.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from models.codeset import CodeSet, InvalidCodeFormat, code_key, normalize
from models.seventh import NoteEncounter

# Outcomes, in the order the data report lists them.
KEPT = "billable"
MAPPED_ONLY_CHILD = "mapped_only_billable_descendant"
MAPPED_UNSPECIFIED = "mapped_unspecified_child"
MAPPED_7TH = "mapped_7th_character_from_note"
NEEDS_7TH = "flagged_needs_7th_character"
AMBIGUOUS = "flagged_not_billable_ambiguous"
UNKNOWN = "flagged_not_in_fy2026"
BAD_FORMAT = "flagged_bad_format"
OUTCOMES = (KEPT, MAPPED_ONLY_CHILD, MAPPED_UNSPECIFIED, MAPPED_7TH, NEEDS_7TH, AMBIGUOUS, UNKNOWN, BAD_FORMAT)


@dataclass(frozen=True)
class CodeOutcome:
    raw: str
    outcome: str
    code: str | None  # the FY2026 billable code used for training, None when flagged

    @property
    def usable(self) -> bool:
        return self.code is not None


def map_code(raw: str, cs: CodeSet, note: NoteEncounter | None = None) -> CodeOutcome:
    """`raw` as a FY2026 billable code. A code that lacks only its 7th character (CodiEsp's
    S71.101, W19.XXX) gets the one its note supports when the note is given (training gold, so
    the ranker learns injuries as the app codes them); evaluation leaves it as written, matched
    by any 7th character."""
    try:
        norm = normalize(raw)
    except InvalidCodeFormat:
        return CodeOutcome(raw, BAD_FORMAT, None)
    if not cs.is_valid(norm):
        # W19.XXX: placeholder X's written out but the 7th character left off.
        stem = norm.rstrip("X").rstrip(".")
        if stem != norm and cs.is_valid(stem) and _lacks_7th(norm, cs.billable_descendants(stem)):
            return _with_7th(raw, norm, cs, note)
        return CodeOutcome(raw, UNKNOWN, None)
    if cs.is_billable(norm):
        return CodeOutcome(raw, KEPT, norm)
    billable = cs.billable_descendants(norm)
    if len(billable) == 1:
        return CodeOutcome(raw, MAPPED_ONLY_CHILD, billable[0])
    if _lacks_7th(norm, billable):
        return _with_7th(raw, norm, cs, note)
    children = cs.children(norm)
    unspecified = [c for c in children
                   if cs.is_billable(c) and cs.description(c).lower().endswith("unspecified")]
    if len(unspecified) == 1:
        return CodeOutcome(raw, MAPPED_UNSPECIFIED, unspecified[0])
    return CodeOutcome(raw, AMBIGUOUS, None)


def _with_7th(raw: str, norm: str, cs: CodeSet, note: NoteEncounter | None) -> CodeOutcome:
    resolved = note.supported_code(cs, norm) if note is not None else norm
    return CodeOutcome(raw, MAPPED_7TH, resolved) if resolved != norm else CodeOutcome(raw, NEEDS_7TH, None)


def _lacks_7th(code: str, billable: list[str]) -> bool:
    """True when every billable code under `code` is it plus placeholder X's and a 7th character."""
    padded = code_key(code).ljust(6, "X")
    return bool(billable) and all(
        len(k) == 7 and k.startswith(padded) for k in map(code_key, billable))


def map_codes(raws, cs: CodeSet, counter: Counter | None = None,
              note: str | None = None) -> tuple[list[str], list[CodeOutcome]]:
    """Usable FY2026 codes (order kept, duplicates removed) and every outcome. `note`: the text
    the codes were assigned to, which gives a code lacking its 7th character the one it supports."""
    encounter = NoteEncounter(note) if note else None
    outcomes = [map_code(r, cs, encounter) for r in raws]
    if counter is not None:
        counter.update(o.outcome for o in outcomes)
    usable = list(dict.fromkeys(o.code for o in outcomes if o.usable))
    return usable, outcomes
