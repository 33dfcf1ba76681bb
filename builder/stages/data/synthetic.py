"""Synthetic clinical notes generated from the code set, seeded and reproducible.

Each note has the sections clinicians write (chief complaint, HPI, history, medications, exam,
assessment and plan), several coded conditions worded from official descriptions and inclusion
terms (shortened and abbreviated the way clinicians write), and conditions mentioned as denied,
ruled out, resolved or in the family history, which must not be coded.
"""
from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass

from builder.stages.data.codes import map_codes
from models.codeset import CodeSet
from models.contract import CodedItem
from models.seventh import NoteEncounter

# Chapters whose codes read naturally as a problem in an outpatient or inpatient note.
_POOL_PREFIXES = tuple("ABCDEFGHIJKLMNR")
_SKIP_WORDS = re.compile(
    r"subsequent encounter|sequela|other specified|not elsewhere|unspecified site|"
    r"\bin diseases classified elsewhere|\bunspecified (?:trimester|part)|"
    r"\bcomplicating\b|\bnewborn\b|\bfetus\b|\bunderdosing\b|\bpoisoning\b", re.I)
_FEMALE = re.compile(r"pregnan|puerper|childbirth|maternal|female|uter|ovar|cervi|vagin|vulv|"
                     r"endometri|menstru|menopaus|breast", re.I)
_MALE = re.compile(r"prostat|testi|scrot|penis|male erectile|spermat", re.I)

# How clinicians shorten common terms. Applied to whole words, case-insensitively.
ABBREVIATIONS = {
    "type 2 diabetes mellitus": "T2DM", "type 1 diabetes mellitus": "T1DM",
    "diabetes mellitus": "DM", "essential (primary) hypertension": "HTN",
    "hypertension": "HTN", "chronic kidney disease": "CKD",
    "chronic obstructive pulmonary disease": "COPD", "congestive heart failure": "CHF",
    "heart failure": "HF", "myocardial infarction": "MI", "urinary tract infection": "UTI",
    "gastro-esophageal reflux disease": "GERD", "atrial fibrillation": "AFib",
    "atherosclerotic heart disease": "CAD", "hyperlipidemia": "HLD",
    "deep vein thrombosis": "DVT", "pulmonary embolism": "PE", "pneumonia": "PNA",
    "osteoarthritis": "OA", "rheumatoid arthritis": "RA", "major depressive disorder": "MDD",
    "obstructive sleep apnea": "OSA", "benign prostatic hyperplasia": "BPH",
    "acute kidney failure": "AKI", "shortness of breath": "SOB", "with": "w/",
    "without": "w/o", "bilateral": "b/l", "left": "L", "right": "R",
}
_ABBREV_RE = re.compile(
    r"\b(" + "|".join(re.escape(k) for k in sorted(ABBREVIATIONS, key=len, reverse=True)) + r")(?=\W|$)",
    re.I)

NEGATED_TEMPLATES = (
    "Denies {x}.", "No {x}.", "Negative for {x}.", "{X} was ruled out.",
    "No evidence of {x}.", "Patient denies any {x}.",
)
HISTORICAL_TEMPLATES = (
    "Remote history of {x}, resolved.", "{X} in childhood, fully resolved.",
    "Treated for {x} years ago, no recurrence.",
)
FAMILY_TEMPLATES = ("Mother with {x}.", "Father had {x}.", "Family history of {x}.",
                    "Sister diagnosed with {x}.")
PRESENT_TEMPLATES = (
    "presents with {x}", "is seen today for {x}", "is admitted with {x}",
    "comes in for evaluation of {x}", "referred for {x}",
)
PLANS = (
    "continue current management", "follow up in 2 weeks", "labs ordered, will recheck",
    "start treatment as discussed", "refer to specialist", "monitor closely",
    "patient educated on diagnosis", "repeat imaging in 3 months", "adjust medication dose",
)
MEDS = ("metformin 500 mg BID", "lisinopril 10 mg daily", "atorvastatin 40 mg nightly",
        "aspirin 81 mg daily", "omeprazole 20 mg daily", "levothyroxine 50 mcg daily",
        "albuterol inhaler PRN", "amlodipine 5 mg daily", "sertraline 50 mg daily",
        "furosemide 20 mg daily", "acetaminophen PRN")
EXAMS = ("Lungs clear to auscultation bilaterally.", "Heart regular rate and rhythm, no murmur.",
         "Abdomen soft, non-tender.", "Alert and oriented x3.", "No peripheral edema.",
         "Skin warm and dry.", "Neurologically intact.")


@dataclass
class SyntheticNote:
    note_id: str
    text: str
    items: list[CodedItem]  # coded conditions with the words of the note that support them
    not_coded: list[str]  # codes mentioned only as denied, historical or family history


def mention(description: str, rng: random.Random) -> str:
    """A clinician's wording of an official description."""
    text = re.sub(r"\s*\([^)]*\)", "", description)  # "(primary)", "(NOS)" qualifiers
    text = re.sub(r",\s*(unspecified|initial encounter(?: for [a-z ]+)?|NOS)\b.*$", "", text,
                  flags=re.I)
    text = re.sub(r"^(Other|Unspecified)\s+", "", text, flags=re.I).strip(" ,")
    text = text[:1].lower() + text[1:] if not text[:2].isupper() else text
    if rng.random() < 0.45:
        text = _ABBREV_RE.sub(lambda m: ABBREVIATIONS[m.group(1).lower()], text)
    return text or description


def codiesp_prior(raw_code_lists, cs: CodeSet) -> Counter:
    """The code frequencies synthetic notes draw from: CodiEsp train's codes as the corpus writes
    them (an injury that lacks its 7th character is not drawn), so that a seed gives the same
    notes in every stage and every build, whatever gold the ranker is fitted on."""
    prior = Counter()
    for raws in raw_code_lists:
        prior.update(map_codes(raws, cs)[0])
    return prior


class SyntheticNoteGenerator:
    def __init__(self, cs: CodeSet, seed: int = 13, prior: Counter | None = None):
        """`prior`: code frequencies to draw from (e.g. CodiEsp train), mixed with the pool."""
        self.cs = cs
        self.seed = seed
        self.pool = [c for c in cs.all_codes(billable_only=True)
                     if c.startswith(_POOL_PREFIXES) and not _SKIP_WORDS.search(cs.description(c))]
        self.prior_codes = [c for c in (prior or {}) if cs.is_billable(c)]
        self.prior_weights = [prior[c] for c in self.prior_codes] if prior else []

    def _draw_code(self, rng: random.Random) -> str:
        if self.prior_codes and rng.random() < 0.6:
            return rng.choices(self.prior_codes, self.prior_weights)[0]
        return rng.choice(self.pool)

    def _wording(self, code: str, rng: random.Random) -> str:
        options = [self.cs.description(code)]
        options += [t for t in self.cs.inclusion_terms(code) if len(t) < 80]
        return mention(rng.choice(options), rng)

    def _related(self, a: str, b: str) -> bool:
        return a[:3] == b[:3] or self.cs.excludes1_conflict(a, b) is not None

    def generate(self, index: int) -> SyntheticNote:
        rng = random.Random(self.seed * 1_000_003 + index)
        coded: list[str] = []
        while len(coded) < rng.randint(2, 6):
            code = self._draw_code(rng)
            if all(not self._related(code, c) for c in coded):
                coded.append(code)
        others: list[str] = []
        while len(others) < rng.randint(1, 3):
            code = self._draw_code(rng)
            if all(not self._related(code, c) for c in coded + others):
                others.append(code)
        words = {c: self._wording(c, rng) for c in coded + others}
        descs = " ".join(self.cs.description(c) for c in coded)
        sex = ("female" if _FEMALE.search(descs) else "male" if _MALE.search(descs)
               else rng.choice(["male", "female"]))
        age = rng.randint(18, 90)
        pronoun = "She" if sex == "female" else "He"
        main, chronic = coded[0], coded[1:]

        lines = [f"CHIEF COMPLAINT: {words[main].capitalize()}.", ""]
        hpi = f"HPI: {age}-year-old {sex} "
        if chronic and rng.random() < 0.7:
            hpi += f"with a history of {', '.join(words[c] for c in chronic[:2])} "
        hpi += rng.choice(PRESENT_TEMPLATES).format(x=words[main]) + "."
        hpi += f" Symptoms began {rng.choice(['2 days', '1 week', '3 weeks', 'several months'])} ago."
        lines.append(hpi)
        excluded = []
        for code in others:
            kind = rng.choice(["negated", "negated", "historical", "family"])
            templates = {"negated": NEGATED_TEMPLATES, "historical": HISTORICAL_TEMPLATES,
                         "family": FAMILY_TEMPLATES}[kind]
            sentence = rng.choice(templates).format(x=words[code], X=words[code].capitalize())
            excluded.append(sentence)
        lines.append(" ".join(excluded[:1] + [f"{pronoun} reports no other complaints."]))
        lines += ["", "PAST MEDICAL HISTORY: " + (", ".join(words[c] for c in chronic) or "none")
                  + ". " + " ".join(excluded[1:]), ""]
        lines.append("MEDICATIONS: " + ", ".join(rng.sample(MEDS, rng.randint(1, 4))) + ".")
        lines += ["", f"EXAM: BP {rng.randint(100, 170)}/{rng.randint(60, 100)}, HR "
                  f"{rng.randint(55, 110)}, T {rng.choice(['36.8', '37.2', '38.4'])} C. "
                  + " ".join(rng.sample(EXAMS, 2)), "", "ASSESSMENT AND PLAN:"]
        for n, code in enumerate(coded, 1):
            lines.append(f"{n}. {words[code][:1].upper() + words[code][1:]} - {rng.choice(PLANS)}.")
        text = "\n".join(lines) + "\n"
        # A wording without its 7th character's meaning ("low-tension glaucoma" drawn for
        # H40.1292, moderate stage) supports the character a coder would give it, not the drawn one.
        items = [CodedItem(NoteEncounter(words[c]).supported_code(self.cs, c),
                           words[c][:1].upper() + words[c][1:]) for c in coded]
        return SyntheticNote(f"synthetic-{self.seed}-{index}", text, items, others)
