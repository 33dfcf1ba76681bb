"""Checks on a clinical note before it goes anywhere: empty, binary, huge, not English.

Errors say what to do; warnings travel with the result so the user sees them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CoderError

MAX_NOTE_CHARS = 200_000
# Function words that make up a large share of any English prose, clinical notes included.
_ENGLISH_COMMON = frozenset(
    "the and of with to in a is was for on no not patient history pain left right at by as "
    "an or be has had were are this that he she his her from denies without after".split()
)
_WORD = re.compile(r"[^\W\d_]{2,}", re.UNICODE)


class NoteError(CoderError, ValueError):
    """The note cannot be coded as given; the message says what to do."""


@dataclass
class CheckedNote:
    text: str
    warnings: list[str] = field(default_factory=list)


def check_note(text: str, max_chars: int = MAX_NOTE_CHARS) -> CheckedNote:
    """Validate a note; raise NoteError for what cannot be coded, warn for what is doubtful."""
    if not isinstance(text, str):
        raise NoteError("The note must be text. Paste the note or open a .txt file.")
    if "\x00" in text:
        raise NoteError("The note contains binary data (NUL bytes). Open the plain-text note, "
                        "not a PDF, image or word-processor file.")
    if not text.strip():
        raise NoteError("The note is empty. Paste a clinical note first.")
    if len(text) > max_chars:
        raise NoteError(f"The note has {len(text):,} characters; the limit is {max_chars:,}. "
                        "Split it into separate encounters and code each one.")
    warnings = []
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\n\r\t\f")
    if controls > max(3, len(text) // 100):
        raise NoteError("The note looks like binary data (many control characters). Open the "
                        "plain-text note instead.")
    words = [w.lower() for w in _WORD.findall(text)]
    if len(words) >= 20:
        share = sum(w in _ENGLISH_COMMON for w in words) / len(words)
        latin = sum(w.isascii() for w in words) / len(words)
        if share < 0.04 or latin < 0.5:
            warnings.append("The note does not look like English. The model was trained on "
                            "English notes: review every suggestion with extra care.")
    return CheckedNote(text=text, warnings=warnings)


# The heading of a note's assessment: "ASSESSMENT:", "Assessment and plan", "A/P:", "Impression",
# "Diagnoses:", at the start of a line. Most case reports (CodiEsp) have none.
_ASSESSMENT = re.compile(
    r"^[ \t]*(?:assessment(?:[ \t]*(?:and|&|/)[ \t]*plan)?|impression(?:[ \t]*(?:and|&|/)[ \t]*plan)?"
    r"|a[ \t]*/[ \t]*p|(?P<diagnoses>(?P<hospital>final |discharge )?diagnos[ie]s))[ \t]*(?::|$)",
    re.I | re.M)


def assessment_start(text: str) -> int | None:
    """Where the note's assessment begins (its first heading), or None for a note without one.
    The assessment runs to the end of the note: the plan, where it has its own heading, follows."""
    m = _ASSESSMENT.search(text)
    return m.start() if m else None


# A plan under a heading of its own ("Plan:"), after the assessment: what will be done, not what
# the patient has ("Acetaminophen for fever", "return for chest pain").
_PLAN = re.compile(r"^[ \t]*(?:plan|recommendations?)[ \t]*(?::|$)", re.I | re.M)


def discharge_summary(text: str) -> bool:
    """Is the note's assessment a hospital's final or discharge diagnoses? There an uncertain
    diagnosis is coded as if established (ICD-10-CM guidelines, Section II.H); in an office,
    clinic or ED note it is not (Section IV.H)."""
    m = _ASSESSMENT.search(text)
    return bool(m and m.group("hospital"))


def encounter_note(text: str) -> bool:
    """Is the note an office, clinic or ED encounter's, with an "Assessment", "Impression" or
    "A/P" heading? Its assessment names what the visit is coded for, in the note's words; a
    "Diagnosis:" heading is also how case reports and hospital summaries list theirs."""
    m = _ASSESSMENT.search(text)
    return bool(m and not m.group("diagnoses"))


def assessment_span(text: str) -> tuple[int, int] | None:
    """(start, end) of the note's assessment without a plan under its own heading after it, or
    None for a note without an assessment."""
    start = assessment_start(text)
    if start is None:
        return None
    plan = _PLAN.search(text, start)
    return start, plan.start() if plan else len(text)


# "67-year-old", "18-month-old", "10-day-old": the patient's age as the note's first such phrase.
_AGE = re.compile(r"\b(\d{1,3})[- ](year|yr|month|mo|week|wk|day)s?[- ]old\b", re.I)
_DAYS = {"y": 365, "m": 30, "w": 7, "d": 1}


def patient_age_days(text: str) -> int | None:
    """The patient's age in days, from the first "N-year-old" (month, week, day) the note writes;
    None where it writes none."""
    age = _AGE.search(text)
    return int(age.group(1)) * _DAYS[age.group(2)[0].lower()] if age else None


# "56-year-old man", "a woman", "Female, 34": the patient's sex as the note's first such word.
_SEX = re.compile(r"\b(?:(man|male|boy|gentleman)|(woman|female|girl|lady))\b", re.I)


def patient_sex(text: str) -> str | None:
    """"male" or "female", from the first word of a person's sex the note writes; None where it
    writes none."""
    sex = _SEX.search(text)
    return None if sex is None else "male" if sex.group(1) else "female"


def read_note_file(path: str | Path) -> CheckedNote:
    """Read a note from disk: UTF-8 (with or without BOM), else Windows-1252 with a warning."""
    raw = Path(path).read_bytes()
    if b"\x00" in raw[:8192]:
        raise NoteError(f"{path} is a binary file, not a text note. Save the note as plain text "
                        "(.txt) and open that.")
    try:
        text, warning = raw.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
        warning = (f"{Path(path).name} is not UTF-8; it was read as Windows-1252. Check accented "
                   "characters.")
    checked = check_note(text)
    if warning:
        checked.warnings.insert(0, warning)
    return checked
