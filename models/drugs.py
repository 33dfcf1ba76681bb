"""Drugs the note says the patient takes, by class.

ICD-10-CM asks for a long-term drug therapy code in "Use additional code" notes, by the class's
name: E11 "code to identify control using: insulin (Z79.4), oral antidiabetic drugs (Z79.84),
injectable non-insulin antidiabetic drugs (Z79.85)", I82.5 "long-term (current) use of
anticoagulants (Z79.01)". The code set names the class, not its drugs: this module holds what a
coder knows, the generic and common brand names of each class those notes and the Z79 codes
name, and finds them in a note's affirmed clauses: as a current drug, or as one the note says
the patient takes long term, which a coder codes whether or not a diagnosis asks for it.
"""
from __future__ import annotations

import re
from functools import lru_cache

from .text import clauses, sentences

# The class as a "Use additional code" line and its Z79 code name it (checked in this order:
# "injectable non-insulin antidiabetic drugs" holds "insulin"), and the names a note gives its drugs.
DRUG_CLASSES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("injectable non-insulin antidiabetic drugs", r"\binjectable non-insulin antidiabetic",
     ("liraglutide", "dulaglutide", "exenatide", "lixisenatide", "tirzepatide", "pramlintide",
      "semaglutide injection", "Victoza", "Trulicity", "Byetta", "Bydureon", "Mounjaro", "Ozempic")),
    ("oral antidiabetic drugs", r"\boral (?:antidiabetic|hypoglycemic)",
     ("metformin", "glipizide", "glyburide", "glibenclamide", "glimepiride", "gliclazide",
      "sitagliptin", "linagliptin", "saxagliptin", "alogliptin", "vildagliptin", "pioglitazone",
      "rosiglitazone", "empagliflozin", "dapagliflozin", "canagliflozin", "ertugliflozin",
      "repaglinide", "nateglinide", "acarbose", "oral semaglutide", "Glucophage", "Januvia",
      "Janumet", "Tradjenta", "Jardiance", "Farxiga", "Invokana", "Actos", "Rybelsus",
      "oral antidiabetic", "oral antidiabetics", "oral hypoglycemic", "oral hypoglycemics")),
    ("insulin", r"\binsulin\b",
     ("insulin", "glargine", "detemir", "degludec", "lispro", "aspart", "glulisine", "Lantus",
      "Levemir", "Tresiba", "Toujeo", "Basaglar", "Humalog", "Novolog", "Humulin", "Novolin")),
    ("anticoagulants", r"\banticoagulants?\b",
     ("warfarin", "acenocoumarol", "phenprocoumon", "apixaban", "rivaroxaban", "dabigatran",
      "edoxaban", "Coumadin", "Sintrom", "Eliquis", "Xarelto", "Pradaxa", "Savaysa",
      "anticoagulant", "anticoagulants", "anticoagulation", "anticoagulated")),
    ("antiplatelets", r"\bantiplatelets?\b|\bantithrombotics?\b",
     ("clopidogrel", "prasugrel", "ticagrelor", "ticlopidine", "cilostazol", "dipyridamole", "vorapaxar",
      "Plavix", "Effient", "Brilinta", "Pletal", "antiplatelet", "antiplatelets", "antithrombotic",
      "antithrombotics")),
    ("aspirin", r"\baspirin\b", ("aspirin", "acetylsalicylic acid", "Ecotrin")),
    ("bisphosphonates", r"\bbisphosphonates?\b",
     ("alendronate", "alendronic acid", "risedronate", "ibandronate", "zoledronic acid",
      "zoledronate", "etidronate", "Fosamax", "Actonel", "Atelvia", "Boniva", "Reclast",
      "bisphosphonate", "bisphosphonates")),
    # Inhaled only: budesonide is also an oral drug for Crohn's disease, fluticasone a nasal spray;
    # a steroid paired with a long-acting bronchodilator comes only as an inhaler.
    ("inhaled steroids", r"\binhaled steroids?\b",
     ("inhaled steroid", "inhaled steroids", "inhaled corticosteroid", "inhaled corticosteroids",
      "inhaled budesonide", "inhaled fluticasone", "inhaled beclomethasone", "inhaled mometasone",
      "inhaled ciclesonide", "fluticasone-salmeterol", "fluticasone/salmeterol",
      "fluticasone-vilanterol", "fluticasone/vilanterol", "budesonide-formoterol",
      "budesonide/formoterol", "mometasone-formoterol", "mometasone/formoterol",
      "Flovent", "Pulmicort", "Qvar", "Asmanex", "Alvesco", "Arnuity", "Advair", "Wixela",
      "Symbicort", "Breyna", "Dulera", "Breo", "Trelegy", "Breztri")),
    # By mouth or by vein only: hydrocortisone and dexamethasone are also creams and eye drops.
    ("systemic steroids", r"\bsystemic (?:cortico)?steroids?\b",
     ("prednisone", "prednisolone", "methylprednisolone", "Deltasone", "Medrol", "Rayos", "oral steroid",
      "oral steroids", "oral corticosteroid", "oral corticosteroids", "systemic steroid", "systemic steroids",
      "systemic corticosteroid", "systemic corticosteroids")),
    # Z79.631: methotrexate for rheumatoid arthritis or psoriasis as for a cancer. Not fluorouracil,
    # mostly a cream (actinic keratoses).
    ("antimetabolites", r"\bantimetabolite",
     ("methotrexate", "Trexall", "Otrexup", "Rasuvo", "Xatmep", "mercaptopurine", "6-mercaptopurine",
      "Purixan", "capecitabine", "Xeloda")),
)

# The classes a coder codes wherever the note says the patient takes them long term ("Continue
# apixaban long term", "Long-term aspirin and clopidogrel", "Long-term bisphosphonate therapy").
# The diabetes drugs are coded only where a diabetes code asks for them: ICD-10-CM codes no
# insulin use with type 1 diabetes, which asks for none (guideline I.C.4.a.3).
CODED_WHEN_STATED = ("anticoagulants", "antiplatelets", "aspirin", "bisphosphonates", "inhaled steroids",
                     "systemic steroids", "antimetabolites")

# "long-term", "long term", "longterm", "chronic anticoagulation", "on chronic prednisone"
_LONG_TERM = re.compile(r"\blong[- ]?term\b|\bchronic(?:ally)? (?:anticoagula|steroid|corticosteroid|prednison)",
                        re.I)
# A plan to go on with a drug, unless for a short course ("continue apixaban for 3 more days",
# "continue prednisone to complete 5 days"); one of months is a long one ("continue apixaban for
# 3 months total" after a pulmonary embolism).
_CONTINUE = re.compile(r"\bcontinu(?:e|es|ing)\b(?![^.;\n]*\b(?:for \d+ (?:more |additional |further )?"
                       r"(?:days?|doses?|weeks?)|until|to complete|course)\b)", re.I)

# A change from one drug to another ("switch to", "change to", "step up to", "transition from
# warfarin to apixaban"): where both are of one class, the class's therapy goes on.
_SWITCH = re.compile(r"\b(?:switch|chang|step|transition|convert)\w*\s+(?:up\s+|down\s+)?"
                     r"(?:from\s+\S+(?:\s+\S+)?\s+)?to\b", re.I)

# A drug stopped, refused or only planned is no current therapy: "warfarin was discontinued",
# "allergic to metformin", "start metformin 500 mg" (a drug begun at this visit is not yet
# long-term), "insulin if A1c rises".
_NOT_CURRENT = re.compile(
    r"\b(?:stop|stopped|stopping|discontinu\w*|d/c|held|hold|holding|off|ceased|withdrawn|"
    r"allerg\w*|intoleran\w*|contraindicat\w*|refus\w*|declin\w*|previously|formerly|former|"
    r"start|starting|initiate|initiating|begin|add|adding|consider|considering|if|would|may)\b",
    re.I)


# A drug's name used for something else: "insulin resistance", "anti-insulin antibodies",
# "insulin-dependent", "warfarin-induced".
_NOT_THE_DRUG = (r"(?!\s*-?\s*(?:resistan|sensitiv|levels?\b|secret|antibod|autoantibod|dependen|deficien|"
                 r"receptor|induced|like\b|analog))")


@lru_cache(maxsize=8)
def _name_pattern(names: tuple[str, ...]) -> re.Pattern:
    alternatives = sorted((re.escape(n).replace(r"\ ", r"\s+") for n in names), key=len, reverse=True)
    return re.compile(rf"(?<!anti-)(?<!anti)\b(?:{'|'.join(alternatives)})\b{_NOT_THE_DRUG}", re.I)


def drug_class(line: str) -> str | None:
    """The class a "Use additional code" line names ("oral hypoglycemic drugs (Z79.84)" ->
    "oral antidiabetic drugs"), None for any other line."""
    return next((name for name, wording, _ in DRUG_CLASSES if re.search(wording, line, re.I)), None)


def current_drug(note: str, class_name: str) -> tuple[int, int] | None:
    """Where the note names a drug of the class as one the patient takes: in an affirmed clause
    that does not say it was stopped, refused or is only planned (a clause, not the sentence: one
    item of a medication list may be stopped). None if nowhere."""
    return _current_in(note, class_name, 0, len(note))


def long_term_drug(note: str, class_name: str) -> tuple[int, int] | None:
    """Where the note says the patient takes a drug of the class long term: a sentence that says
    "long-term" and names a current drug of the class (`current_drug`), or one that continues a
    current drug of the class by its name ("on inhaled budesonide ... continue budesonide"): a
    therapy the patient is on and goes on with is not a short course, nor is one changed to another
    drug of the class ("on fluticasone-salmeterol ... step up to budesonide-formoterol"). None if
    nowhere."""
    for start, end in sentences(note):
        if _LONG_TERM.search(note, start, end) and (span := _current_in(note, class_name, start, end)):
            return span
    current = current_drug(note, class_name)
    if current is None:
        return None
    name = re.compile(rf"\b{re.escape(note[current[0]:current[1]].split()[-1])}\b", re.I)
    for a, b in clauses(note):
        hit = name.search(note, a, b)
        go_on = _CONTINUE.search(note, a, b) if hit else None
        if go_on and go_on.start() < hit.start() and not _NOT_CURRENT.search(note, a, b):
            return hit.span()
    pattern = _class_pattern(class_name)
    for a, b in clauses(note):
        switch = _SWITCH.search(note, a, b)
        target = pattern.search(note, switch.end(), b) if switch else None
        # the drug taken now is another mention than the one changed to
        if target and not target.start() <= current[0] < b and not _NOT_CURRENT.search(note, a, b):
            return current
    return None


def _class_pattern(class_name: str) -> re.Pattern:
    """Any name of a drug of the class."""
    return _name_pattern(next(n for name, _, n in DRUG_CLASSES if name == class_name))


def _current_in(note: str, class_name: str, start: int, end: int) -> tuple[int, int] | None:
    pattern = _class_pattern(class_name)
    for a, b in clauses(note):
        if start <= a < end:
            hit = pattern.search(note, a, b)
            if hit is not None and not _NOT_CURRENT.search(note, a, b):
                return hit.span()
    return None
