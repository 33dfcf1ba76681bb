"""The body mass index a note records, as the Z68 code for it.

ICD-10-CM asks for the BMI where a condition's "Use additional code" note says so (E66
overweight and obesity: "code to identify body mass index (BMI), if known, for adults
(Z68.1-Z68.45) or pediatrics (Z68.5-)"). An adult's code is chosen by the value, from the
ranges the Z68 titles write ("Body mass index [BMI] 37.0-37.9, adult"); a child's is by
percentile for age, which a note rarely gives as a number, so none is chosen for a patient
under 20.
"""
from __future__ import annotations

import re
from functools import lru_cache

from .codeset import CodeSet
from .notes import patient_age_days

_VALUE = re.compile(r"\b(?:BMI|body mass index)\b(?:\s+(?:is|of|was|=|:))?\s*:?\s*(\d{2}(?:\.\d+)?)", re.I)
_ADULT_DAYS = 20 * 365  # the Z68 "adult" codes are for persons 20 years of age or older
_RANGE = re.compile(r"(\d+(?:\.\d)?)-(\d+(?:\.\d)?), adult$")
_AT_MOST = re.compile(r"(\d+(?:\.\d)?) or less, adult$")
_AT_LEAST = re.compile(r"(\d+(?:\.\d)?) or greater, adult$")


def recorded_bmi(note: str) -> tuple[float, tuple[int, int]] | None:
    """The first BMI value the note writes ("BMI 37.4", "body mass index of 31") and where the
    note says it; None where it writes none, or the patient is a child ("8-year-old")."""
    age = patient_age_days(note)
    if age is not None and age < _ADULT_DAYS:
        return None
    hit = _VALUE.search(note)
    return None if hit is None else (float(hit.group(1)), hit.span())


def adult_bmi_code(cs: CodeSet, value: float) -> str | None:
    """The Z68 code of an adult's BMI value, by the ranges of the code set's titles."""
    for code, low, high in _adult_ranges(cs):
        if low <= value < high:
            return code
    return None


@lru_cache(maxsize=4)
def _adult_ranges(cs: CodeSet) -> tuple[tuple[str, float, float], ...]:
    out = []
    for code in cs.billable_descendants("Z68"):
        title = cs.description(code)
        if m := _RANGE.search(title):  # "20.0-20.9": up to, not including, 21.0
            out.append((code, float(m.group(1)), float(m.group(2)) + 0.1 - 1e-9))
        elif m := _AT_MOST.search(title):
            out.append((code, 0.0, float(m.group(1)) + 0.1 - 1e-9))
        elif m := _AT_LEAST.search(title):
            out.append((code, float(m.group(1)), float("inf")))
    return tuple(out)
