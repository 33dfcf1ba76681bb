"""Coding rules applied after selection: which of the selected codes a coder would not report.

`apply(selected, cs)` is a pure function of the selected codes and the code set: no note, no
model, no per-code list. Every decision is read from the code set's own data (descriptions, the
hierarchy, block and chapter titles, Excludes and "Use additional code" notes). It returns the
codes kept, in their order, the dropped ones as `Rejected(code, reason)`, and the generic codes
kept beside a less sure specific one (`outranked`), which the pipeline flags.

A code is dropped only for a code selected with at least its probability (the pipeline passes the
confidence, halved when the note holds no evidence), or one the note's assessment states
(`established`): a coder reports the specific diagnosis, and
leaves out its symptoms, once that diagnosis is established; one the selector is less sure of than
the generic code or the symptom does not displace them. (On CodiEsp dev, whose annotators code
every mention, symptoms beside their diagnosis included, the rules without this condition cost
4.5 points of micro-F1, with it 1.1.)

Before those two, `apply` forms combination codes (`Applied.combined`): ICD-10-CM reports some
pairs of conditions with one code, and a coder who sees both in a note reports that code.

The reasons are plain strings:

`in_combination` (IN_COMBINATION)
    A code whose condition a combination code reports, added (or already selected) beside it.
    Two kinds, both read from the code set's notes:
    - A category whose Includes note reads "any condition in <codes> due to <condition>" (I12
      hypertensive chronic kidney disease: "any condition in N18 and N26 - due to hypertension";
      I11 the same for heart failure) or "any condition in <category> with any condition in
      <category>" (I13: I11 with I12). When the note holds the condition (I10, whose Includes
      note names plain "hypertension") and a code in those ranges (N18.4), the combination's
      billable code whose "Use additional code" notes that selection satisfies is added (I12.9,
      which asks for N18.1-N18.4 or N18.9; I12.0 asks for N18.5-N18.6), the most covering one
      where several do (I13.0 over I12.9 when heart failure is there too). I10 is dropped, N18.4
      stays: the combination asks for it. A code it does not ask for, it reports, and that goes
      too (I51.9 heart disease, unspecified beside I11.9 hypertensive heart disease). A code of
      either category of a pair goes beside the pair's code (I11.9 beside I13.0), whether or not
      the note's hypertension was selected.
    - A code "without ..." (E11.9 "without complications", I11.9 "without heart failure") beside
      a code that a "with" code of its own category asks for in its "Use additional code" note
      (N18.4, asked for by E11.22 "with diabetic chronic kidney disease"; I50.22, asked for by
      I11.0 "with heart failure"): the "with" code replaces it, or stays alone where it is
      already selected. (ICD-10-CM presumes the
      link that "with" names unless the note says otherwise.) Where two "with" codes ask for the
      same code, nothing changes: a foot ulcer's site (L97.4-) is asked for by both E11.621
      (foot ulcer) and E11.622 (other skin ulcer), and which one the note means is a guess.
    The added code's probability is the least of those of the codes it combines. CodiEsp's
    annotators code I10 beside N18 and E11.9 beside N18 (the Spanish practice); US coders do not.

`less_specific` (LESS_SPECIFIC)
    A code that says "unspecified", "without complications" or "uncomplicated" (E11.9) is dropped
    when another selected code below the same parent says more (E11.22, under E11): the specific
    code already reports the condition. Where the specific code is the less sure of the two, both
    stay and the generic one is flagged (`Applied.outranked`): they contradict each other, and the
    coder decides. "Below the same parent" rather than "same first three
    characters": a category can hold unrelated conditions (E87.1 hyponatremia and E87.20 acidosis,
    unspecified are both E87), a parent's subtree is one condition.
    Also an "unspecified" code of another category of the same chapter whose words the specific
    code holds in its description and the titles above it, chapter aside: T14.90XA "Injury,
    unspecified" beside S93.491A, a sprain under the block "Injuries to the ankle and foot";
    C80.1 "Malignant (primary) neoplasm, unspecified" beside C61 "Malignant neoplasm of
    prostate". Not where the specific code asks for it (I11.0 asks for the type of heart failure,
    I50.-). Also an "unspecified" code of the same category under another subcategory, whose
    words but "unspecified" the specific code's description holds with more: F17.200 "Nicotine
    dependence, unspecified, uncomplicated" beside F17.210 "Nicotine dependence, cigarettes,
    uncomplicated"; I48.91 "Unspecified atrial fibrillation" beside I48.21 "Permanent atrial
    fibrillation". A specific code the assessment states displaces the generic one whatever the
    probabilities, and one it does not state never displaces a generic code it states. A residual
    "Other ..." code displaces nothing (E78.49 "Other hyperlipidemia" beside E78.5): it names
    no more than the generic code unless the assessment states it through its own terms, which
    `specific_in_assessment` handles.

`excluded_by_stated_code` (EXCLUDED)
    A code that an Excludes1 note forbids beside a diagnosis the note's assessment states
    (`established`), where it is not stated itself: E11.9 beside "Type 1 diabetes mellitus with
    ketoacidosis" (E11 excludes E10), F32.9 beside "Major depressive disorder, recurrent,
    moderate" (F32 excludes F33); or stated only in the words of the other: E61.1 "Iron
    deficiency" beside "Iron deficiency anemia" (D50.9; E61.1 excludes it). Also beside a code
    the assessment states in the code set's words, a symptom code too: G40.909 "Epilepsy" (from
    the word "seizure") beside the R56.00 that "Simple febrile seizure" states. Excludes1 means
    never coded together, and the assessment says which one the physician means. Without an
    assessment (every CodiEsp case report) both stay, and the pipeline flags the conflict.

`symptom_not_in_assessment` (NOT_IN_ASSESSMENT), from `unassessed`, the one rule
    that reads the note
    In a note with an assessment (a heading "Assessment", "A/P", "Impression", "Diagnoses"), a
    sign or symptom (chapter 18, and a "Pain in <site>" of chapter 13: M25.531 "Pain in right
    wrist" beside a Colles' fracture) that the assessment does not name, when the assessment names a
    definitive diagnosis: the physician's assessment is where a diagnosis is established, and a
    symptom it leaves out is either explained by that diagnosis (fever and cough in the history,
    pneumonia in the assessment) or not addressed at this visit. Either way a coder does not
    report it. A note without an assessment heading (every CodiEsp case report) is untouched.
    A plan under a heading of its own after the assessment ("Plan:") is not part of it: what it
    names is treated or watched for ("Acetaminophen for fever", "return for chest pain"), not
    diagnosed.

`diagnosis_not_in_assessment` (DIAGNOSIS_NOT_IN_ASSESSMENT), from `unassessed` too
    In an office, clinic or ED note (`notes.encounter_note`), a diagnosis that the assessment
    neither names nor states, when it names one: L53.9 "Erythematous condition, unspecified"
    from the exam's "erythema" beside the cellulitis the assessment names, T30.0 "Burn of
    unspecified body region" from "burning on urination", L90.5 "Scar conditions and fibrosis of
    skin" from the HPI's healed excision scar beside the keratoses the assessment treats. In such
    a note the assessment is where the physician lists what the visit is coded for; a condition
    it leaves out is a finding the named diagnosis explains or a guess of similar cases. Not an
    organism "as the cause of diseases classified elsewhere" nor a code a named one asks for
    (B96.20 for "Urinary tract infection due to E. coli"), nor a case report (its "Diagnosis:"
    heading lists conditions it details elsewhere). Measured first on "unspecified" diagnoses
    only; all of them: synthetic train notes 0.7307 -> 0.7439, clinic notes 0.860 -> 0.867.

`family_history_not_in_assessment` (FAMILY_NOT_IN_ASSESSMENT), from `unassessed` too
    In such a note, a "Family history of ..." code (Z80-Z84) where no statement about a relative
    is in the assessment: a family history is coded where it bears on the visit (a colonoscopy
    for a father's colon cancer), and the assessment is where the physician says so; one in the
    HPI of an ankle sprain is not.

`contradicted_by_note` (CONTRADICTED), from `contradicted`, which reads the note
    A code "with (unspecified) complications" (E11.8, E11.69) where an affirmed sentence of the
    note states its category's "without complications" code ("Type 2 diabetes mellitus without
    complications"): the note says there are none. A code that names its complication (E11.65
    "with hyperglycemia") is left to the other rules. And a code of an acute or chronic course
    the note never names, where an affirmed sentence says the rest of its words with the other
    course: J32.0 "Chronic maxillary sinusitis" for "Acute bacterial maxillary sinusitis".

`other_alternative_stated` (OTHER_STATED), from `alternative_stated`, which reads the note
    A diagnosis that no affirmed sentence of the note states, where the assessment states
    another code under its parent (`established_in_assessment`), neither of them "unspecified":
    the children of a condition are its alternatives (N18.2 and N18.4, CKD stages 2 and 4; N18.2
    and N18.31, stage 3a, under N18.3; F33.0 and F33.1, mild and moderate), and the physician
    named one. Not under a residual parent ("Other disorders of fluid, electrolyte and acid-base
    balance" holds hyponatremia beside alkalosis), but a residual "Other ..." code the note does
    not state goes beside any code of its category the assessment states (F41.8 "Other
    specified anxiety disorders" beside "Generalized anxiety disorder", F41.1), and in an
    office, clinic or ED note beside any code of its category, stated or not (E78.49 "Other
    hyperlipidemia" beside E78.5 for "Hyperlipidemia, stable on atorvastatin": the assessment
    names each condition once; CodiEsp train, 250 case reports: 0.7817 -> 0.7791 had it held
    there too, where a case report often has both). A sibling the
    note also states stays (E11.21 diabetic nephropathy beside E11.22 diabetic CKD, both in
    "with diabetic nephropathy, chronic kidney disease stage 4"). A note without an assessment
    is untouched.

`uncertain_diagnosis` (UNCERTAIN), from the pipeline with `certain_part`
    In an office, clinic or ED note (one with an assessment heading that is not "Final" or
    "Discharge diagnoses"), a diagnosis whose only support is what "probable", "possible",
    "suspected", "questionable", "rule out", "consistent with" ... qualify: "Do not code
    diagnoses documented as probable, suspected, questionable, rule out ... code the condition(s)
    to the highest degree of certainty for that encounter/visit, such as symptoms" (ICD-10-CM
    guidelines, Section IV.H). "Headache, probable tension-type headache" is R51.9, not G44.209.
    The other rules then read the note without those words. A hospital's discharge diagnoses
    code an uncertain diagnosis as if established (Section II.H), and so does every note
    without an assessment (CodiEsp's case reports).

`side_not_in_note` (WRONG_SIDE), from `wrong_side`, which reads the note too
    A code for one side of the body ("Pain in right knee") where the note names a side, never
    that one ("left knee pain"), or a "bilateral" code where the note names one side only.
    Only a code whose parent also holds a code for another side, which is how the code set
    spells laterality (M25.561 beside M25.562), so "Left ventricular failure" is not read as a
    side; for a code with a 7th character, the parent of its 6-character code (S93.402A's sides
    are under S93.40). A note that names no side leaves every code alone. On CodiEsp train with
    the shipped ranker, 5 of the 10 codes it drops are in the gold (the machine-translated English
    names the other side); on 200 synthetic train notes, 0 of 2. Reaching injury codes too added
    one drop among the 20 best candidates of the 500 CodiEsp train cases (a gold code) and none
    on the synthetic notes.

`less_specific` also from `specific_in_assessment`, the other rule that reads the note
    A generic code ("unspecified", "without complications") whose more specific sibling the
    assessment states word for word ("Chronic kidney disease, stage 4 (severe)" for N18.9; "Type 2
    diabetes mellitus with hyperglycemia" for E11.9), or says beside the generic code's own words
    ("Pernicious anemia with vitamin B12 deficiency": D51.0 for D51.9), gives way to that code,
    which comes in with its probability. And from `reported_by_stated`: a diagnosis the
    assessment states only in words another stated diagnosis's title holds (E53.8 "Vitamin B12
    deficiency" beside D51.0).

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
    A sign or symptom whose own Excludes1 note names a selected diagnosis goes too, whatever its
    block (R73.9 hyperglycemia beside E11.65: R73 excludes diabetes mellitus, E08-E13): Excludes1
    means never coded together, and the diagnosis is what a coder reports.
    A "Pain in <site>" code outside chapter 18 (M25.562 "Pain in left knee") goes beside a
    diagnosis whose description names the site, on the same side or none (M17.12 "Unilateral
    primary osteoarthritis, left knee"), but not beside a code of its own category (M25 holds
    other findings of a joint). A diagnosis the assessment states (`established`) displaces it
    whatever its probability. On CodiEsp train it drops 1 pain code, an annotated one (the
    annotators code every mention); on 200 synthetic train notes none.
    Otherwise not dropped: the blocks whose titles name no system, among them R50-R69 "General symptoms and
    signs" (fever, fatigue, pain, edema: which disease makes them integral is not in the data),
    R40-R46 (cognition, emotional state: suicidal ideation is coded beside depression) and the
    abnormal findings R70-R99, which their titles already limit to "without diagnosis".

`drug_therapy`, the one rule that adds a code the note does not name as a condition
    A long-term drug therapy code (Z79.-) that a selected code's "Use additional code" note asks
    for by its class ("code to identify control using: insulin (Z79.4), oral antidiabetic drugs
    (Z79.84)" on E11; "long-term (current) use of anticoagulants (Z79.01)" on I82.5), where the
    note names a drug of that class (models/drugs.py) in an affirmed clause that does not stop,
    refuse or only plan it. So no Z79.4 with type 1 diabetes (E10 asks for none), and nothing for
    a metformin on the list of a patient without diabetes.

`body_mass_index`, which adds the BMI a selected code asks for
    The Z68 code of the adult BMI the note records ("BMI 37.4": Z68.37), where a selected code's
    "Use additional code" note asks for the BMI (E66 obesity), the value as its evidence.

`long_term_therapy`, which adds the long-term use the note states
    An anticoagulant (Z79.01), antiplatelet (Z79.02), aspirin (Z79.82), systemic steroid (Z79.52)
    or antimetabolite (Z79.631), among others, that a sentence of the note says the patient takes
    long term ("Continue apixaban long term"), whether or not a selected code asks for it
    (`drugs.CODED_WHEN_STATED`).

`detail_asked`, which adds the code a selected code asks for by a range
    L97.412 for E11.621's "site of ulcer (L97.4-, L97.5-)" where the assessment says "right heel
    with fat layer exposed".

`current_smoking` and `tobacco_history`, which add what an encounter note says of tobacco
    F17.210 for "Smokes half a pack a day", Z87.891 for "Former smoker, quit 15 years ago".
"""
from __future__ import annotations

import itertools
import re
from bisect import bisect_left, bisect_right
from functools import lru_cache, partial
from typing import Callable, NamedTuple

from .bmi import adult_bmi_code, recorded_bmi
from .codeset import CodeSet, UnknownCode, code_key
from .codeset._compile import excludes1_ranges as note_ranges
from .contract import Rejected
from .drugs import CODED_WHEN_STATED, DRUG_CLASSES, current_drug, drug_class, long_term_drug
from .notes import assessment_span, assessment_start, discharge_summary, encounter_note, patient_age_days, patient_sex
from .text import (
    NONESSENTIAL,
    VACCINE,
    and_alternatives,
    and_list,
    bracket_alternatives,
    clauses,
    content_words,
    essential_stems,
    family_history_statements,
    key_words,
    negated_stems,
    only_negated_stems,
    plain_wording,
    plural_twins,
    qualified_end,
    reports_family_history,
    sentences,
    singulars,
    slash_alternatives,
    stated_stems,
    stem,
    stems,
    two_names,
    without_uncertain,
)

__all__ = ["CONTRADICTED", "EXCLUDED", "FAMILY_NOT_IN_ASSESSMENT", "IN_COMBINATION", "INTEGRAL_SYMPTOM",
           "IN_PERSONAL_HISTORY", "LESS_SPECIFIC", "NOT_IN_ASSESSMENT", "NO_EVIDENCE", "OTHER_STATED", "REASONS",
           "UNCERTAIN",
           "DIAGNOSIS_NOT_IN_ASSESSMENT", "WRONG_SIDE", "Applied",
           "alternative_stated", "apply", "certain_part", "contradicted", "is_diagnosis", "wordings",
           "body_mass_index", "drug_therapy", "long_term_therapy", "established_in_assessment",
           "history_of", "immunization", "in_personal_history", "routine_examination",
           "specific_in_assessment", "stated_in_assessment", "unassessed", "with_siblings", "wrong_side"]

LESS_SPECIFIC = "less_specific"
INTEGRAL_SYMPTOM = "integral_symptom"
IN_COMBINATION = "in_combination"
NOT_IN_ASSESSMENT = "symptom_not_in_assessment"
DIAGNOSIS_NOT_IN_ASSESSMENT = "diagnosis_not_in_assessment"
WRONG_SIDE = "side_not_in_note"
CONTRADICTED = "contradicted_by_note"
FAMILY_NOT_IN_ASSESSMENT = "family_history_not_in_assessment"
EXCLUDED = "excluded_by_stated_code"
OTHER_STATED = "other_alternative_stated"
UNCERTAIN = "uncertain_diagnosis"
# A malignancy the assessment calls personal history (Z85): excised, not current.
IN_PERSONAL_HISTORY = "neoplasm_in_personal_history"
# In an encounter note, a code whose words the note never says (models/pipeline.py).
NO_EVIDENCE = "no_evidence_in_encounter_note"
# Every reason a rule gives, in the order the pipeline applies them.
REASONS = (UNCERTAIN, WRONG_SIDE, CONTRADICTED, OTHER_STATED, LESS_SPECIFIC, NOT_IN_ASSESSMENT,
           DIAGNOSIS_NOT_IN_ASSESSMENT, FAMILY_NOT_IN_ASSESSMENT, IN_COMBINATION, EXCLUDED,
           INTEGRAL_SYMPTOM, IN_PERSONAL_HISTORY, NO_EVIDENCE)

_GENERIC = re.compile(r"\bunspecified\b|\bwithout complications?\b|\buncomplicated\b", re.I)
_SYMPTOM_BLOCK = re.compile(r"^symptoms and signs involving the (.+?)(?:\s*\([^()]*\))?$", re.I)
_RANGE = re.compile(r"\s*\([^()]*\)$")  # "(J00-J99)" after a title
_DUE_TO = re.compile(r"^any condition in (.+?)\s*-?\s*due to (.+)$", re.I)
_WITH_ANY = re.compile(r"^any condition in (\S+) with any condition in (\S+)$", re.I)
_WITHOUT = re.compile(r"\bwithout complications?\b|\buncomplicated\b", re.I)
_WITHOUT_ANY = re.compile(r"\bwithout\b|\buncomplicated\b", re.I)  # I11.9 "without heart failure"
_WITH = re.compile(r"\bwith\b", re.I)
# "with complications", "with unspecified complications", "with other (specified) complication",
# "with intestinal complications"
_WITH_COMPLICATIONS = re.compile(r"\bwith (?:other )?(?:\w+ )?complications?\b", re.I)
_PARENS = re.compile(r"\s*\([^()]*\)")
_UNSPECIFIED = re.compile(r"\bunspecified\b|\bNOS\b", re.I)
_NOS = re.compile(r"\bNOS\b")
# A place "unspecified" ("Other injury of unspecified body region"), not its behaviour or kind.
_UNSPECIFIED_PART = re.compile(r"\bunspecified (?:body )?(?:region|site|part|location)s?\b", re.I)
_OR_UNSPECIFIED = re.compile(r"\bor unspecified\b", re.I)
# Sides of the body as notes and the code set write them. Not "both": notes write "both diabetes
# and hypertension" far more often than "both knees".
_SIDE = re.compile(r"\b(right|left|bilateral(?:ly)?)\b", re.I)
_BOTH = re.compile(r"\bboth\s+(\w+)(?:\s+(\w+))?", re.I)  # "both eyes", "both lower limbs"
_AFTER_SIDE = re.compile(r"\b(?:right|left)\s+(\w+)", re.I)
# A residual code ("Other cirrhosis of liver", "Fever presenting with conditions classified
# elsewhere") is not a more specific one: it holds what the named codes do not.
_ELSEWHERE = re.compile(r"\bclassified elsewhere\b", re.I)
_OTHER_CONDITION = re.compile(r"other\b", re.I)  # "Other hyperlipidemia"; not "..., other site"
_OTHER_SPECIFIED = re.compile(r"other specified\b", re.I)
_LONE_LETTER = re.compile(r"\b[A-Za-z]\b")
# "Nicotine dependence, other tobacco product"; not a site ("Major osseous defect, other site").
_OTHER_KIND = re.compile(r", other\b(?! (?:sites?|parts?)\b)", re.I)
_RESIDUAL = re.compile(r"^other\b|\bother (?:specified|forms?|sites?)\b|\belsewhere\b", re.I)
_OTHER_WORD = re.compile(r"\bother\b", re.I)  # "... of other part of right foot"


class Applied(NamedTuple):
    kept: list[tuple[str, float]]
    dropped: list[Rejected]
    # A generic code kept because the more specific code beside it is less sure: code -> those
    # codes. The two contradict each other (E11.9 "without complications" beside E11.22): the
    # pipeline flags both for the coder rather than guess which one the note means.
    outranked: dict[str, list[str]]
    # A combination code added by the rules: code -> the selected codes it combines (I12.9 ->
    # I10, N18.4). It is in `kept`, after the first of them.
    combined: dict[str, list[str]]


def apply(selected: list[tuple[str, float]], cs: CodeSet,
          established: frozenset[str] = frozenset(),
          together: Callable[[str, str], bool] = lambda a, b: True,
          stated: frozenset[str] = frozenset()) -> Applied:
    """The selected (code, probability) pairs a coder would report, and the rest with a reason.
    Codes the code set does not know are kept as they are (validation reports them).
    `established`: codes the note's assessment states, which displace a generic code and a pain
    at their site whatever their probability (the physician has established the diagnosis).
    `stated`: codes the assessment states in the code set's words, symptoms too: like
    `established` they displace a code their Excludes1 notes forbid (G40.909 "Epilepsy" beside
    the R56.00 that "Simple febrile seizure" states).
    `together(a, b)`: does the note name the two in one sentence (`sentence_naming_both`)? Only then
    do two codes the code set forbids together become the code that says both."""
    prob = {c: p for c, p in selected if cs.is_valid(c)}

    def sure(diagnosis: str, code: str) -> bool:  # a code the assessment states stays for a guess
        return diagnosis in established or (prob[diagnosis] >= prob[code] and code not in established)

    drop: dict[str, str] = {}
    outranked: dict[str, list[str]] = {}
    added, replaced = _combine(cs, prob, outranked, established, together)
    for code in replaced:
        drop[code] = IN_COMBINATION
    prob.update((code, p) for code, (p, _) in added.items())
    for code in prob:
        if code in drop:
            continue
        specific = [other for other in prob if other != code and other not in drop
                    and _more_specific(cs, other, code)]
        if any(sure(other, code) for other in specific):
            drop[code] = LESS_SPECIFIC
        elif specific:
            outranked.setdefault(code, []).extend(specific)
    diagnoses = [c for c in prob if c not in drop]
    for code in prob:
        systems = _symptom_systems(cs, cs.normalize(code)) if code not in drop else None
        if systems and any(prob[d] >= prob[code] and _chapter(cs, d) in systems
                           and not _asks_for(cs, d, code) for d in diagnoses if d != code):
            drop[code] = INTEGRAL_SYMPTOM
        elif code not in drop and _chapter_kind(cs, code) == "symptom" and any(
                prob[d] >= prob[code] and _excludes(cs, code, d) for d in diagnoses if d != code):
            drop[code] = INTEGRAL_SYMPTOM
        elif code not in drop and any(sure(d, code) and _pain_at_site_of(cs, code, d)
                                      for d in diagnoses if d != code):
            drop[code] = INTEGRAL_SYMPTOM
    for code in prob:  # F32.9 beside the F33.1 the assessment states: F32 excludes F33
        if code not in drop and any(
                (d in established or d in stated) and d not in drop and _excluded_by(cs, code, d)
                and (code not in established or _says_less(cs, code, d)) for d in prob if d != code):
            drop[code] = EXCLUDED
    kept_specific = {c: [o for o in others if o not in drop] for c, others in outranked.items() if c not in drop}
    kept = []
    for c, p in selected:  # an added code goes right after the first code it combines
        if c not in drop:
            kept.append((c, p))
        kept += [(a, prob[a]) for a, (_, sources) in added.items()
                 if sources[0] == c and a not in drop and all(k != a for k, _ in kept)]
    return Applied(kept, [Rejected(c, drop[c]) for c, _ in selected if c in drop],
                   {c: others for c, others in kept_specific.items() if others},
                   {a: sources for a, (_, sources) in added.items() if a not in drop})


def _agent_named_by(cs: CodeSet, code: str, others: list[str]) -> bool:
    """Is `code` an infectious agent (B95-B97) that the title of one of `others` names already
    (B97.4 beside J21.0 "Acute bronchiolitis due to respiratory syncytial virus")? Those
    categories code the agent where the condition's code does not."""
    key = code_key(code)
    if not key.startswith(("B95", "B96", "B97")):
        return False
    agent = stated_stems(cs.description(code))
    return any(cs.is_valid(o) and agent <= essential_stems(cs.description(o)) for o in others)


def unassessed(cs: CodeSet, note: str, codes: list[str]) -> list[Rejected]:
    """The signs and symptoms among `codes` that the note's assessment (not its plan) leaves out, where it
    names a definitive diagnosis among `codes` (NOT_IN_ASSESSMENT above), in an encounter note
    the diagnoses it leaves out too (DIAGNOSIS_NOT_IN_ASSESSMENT above), and
    there the family history codes, where no statement about a relative is in the assessment
    (FAMILY_NOT_IN_ASSESSMENT above)."""
    span = assessment_span(note)
    if span is None:
        return []
    assessed = [key_words(note[a:b]) for a, b in clauses(note) if b > span[0] and a < span[1]]
    kinds = {c: _chapter_kind(cs, c) for c in codes if cs.is_valid(c)}
    # Named in a clause, or stated across the commas of one item ("Acute suppurative otitis
    # media, right ear, without rupture of the eardrum" states H66.001).
    established = established_in_assessment(cs, note, list(kinds))
    named = {c for c in kinds if _named(cs, c, assessed) and _site_named(cs, c, assessed)} | established
    # "Pain in <site>" (M25.531 "Pain in right wrist") is a symptom too, wherever the code set files it.
    symptoms = {c for c in kinds if kinds[c] == "symptom" or _pain_site(cs, cs.normalize(c))}
    # The visit's conclusion: a diagnosis, or in an encounter note the symptom its assessment
    # states for want of one (then the nausea of the history is not coded beside it either), or a
    # routine examination ("Well-child visit": not "eating well" as an eating disorder) or prenatal
    # visit (the morning nausea of a normal pregnancy).
    if not any(kinds[c] == "diagnosis" for c in named) and not (
            encounter_note(note) and (established & symptoms or _routine_visit(note) is not None
                                      or _normal_pregnancy(note) is not None)):
        return []
    out = [Rejected(c, NOT_IN_ASSESSMENT) for c in kinds if c in symptoms and c not in named]
    if encounter_note(note):
        out += [Rejected(c, DIAGNOSIS_NOT_IN_ASSESSMENT) for c in kinds
                if kinds[c] == "diagnosis" and c not in named and c not in symptoms
                and not _ELSEWHERE.search(cs.description(c))
                and (_UNSPECIFIED.search(cs.description(c)) or not _mentioned(cs, c, assessed))
                and not any(_asks_for(cs, d, c) for d in kinds)]
    if not any(b > span[0] and a < span[1] for a, b in family_history_statements(note)):
        out += [Rejected(c, FAMILY_NOT_IN_ASSESSMENT) for c in kinds
                if reports_family_history(cs.description(c))]
    return out


# Words that name no condition by themselves: "Other disorders of lung" is about the lung.
_ANY_CONDITION = frozenset(stem(w) for w in ("disease", "disorder", "condition", "syndrome", "abnormality"))


def _mentioned(cs: CodeSet, code: str, assessed: list[set[str]]) -> bool:
    """Does one clause of the assessment say a word of the code's wordings that names its
    condition: no qualifier ("acute", "left"), no word of its chapter's title ("skin", "system")
    nor a word any condition has ("disorder")? "Diabetes, A1c 6.8" mentions E11.9 "Type 2
    diabetes mellitus without complications", whose type the history gives. (An "unspecified"
    code needs to be named: "burning on urination" in the assessment is no T30.0 "Burn of
    unspecified body region".)"""
    said = _condition_words(cs, cs.normalize(code))
    return any(said & clause for clause in assessed)


@lru_cache(maxsize=65536)
def _condition_words(cs: CodeSet, code: str) -> frozenset[str]:
    """The words of a code's wordings that name its condition (`_mentioned`)."""
    chapter = _chapter(cs, code)
    chapter_words = stems(_RANGE.sub("", cs.description(chapter))) if chapter else frozenset()
    return frozenset(set().union(*_naming_words(cs, code)) - _QUALIFYING - _ANY_CONDITION - chapter_words)


def _site_named(cs: CodeSet, code: str, assessed: list[set[str]]) -> bool:
    """Is the site of a "Pain in <site>" code in one clause of the assessment (any other code:
    True)? "Low back pain with left-sided sciatica" does not name M79.605 "Pain in left leg"."""
    site = _pain_site(cs, cs.normalize(code))
    return not site or any(site <= words for words in assessed)


def contradicted(cs: CodeSet, note: str, codes: list[str]) -> list[Rejected]:
    """The codes "with (unspecified) complications" among `codes` (E11.8) where an affirmed
    sentence of the note states a code of their category "without complications" in its words
    ("Type 2 diabetes mellitus without complications", E11.9), and the codes of an acute or
    chronic course that the note never names, where an affirmed sentence says the condition with
    the other course (J32.0 "Chronic maxillary sinusitis" for "Acute bacterial maxillary
    sinusitis"): CONTRADICTED above."""
    affirmed = _affirmed_sentences(cs, note, 0)
    without = [s for s in affirmed if _WITHOUT.search(s.text)]
    # What the assessment says is absent: a case report's prose ("no other relevant personal
    # history except ...") reaches its qualifiers too far.
    assessed = _assessment_sentences(cs, note)
    said = stems(note)
    out = []
    for code in codes:
        if not cs.is_valid(code):
            continue
        if without and _WITH_COMPLICATIONS.search(cs.description(code)):
            category = _category(cs, code)
            if any(_stated_wordings(cs, plain, without) for plain in cs.billable_descendants(category)
                   if _WITHOUT.search(cs.description(plain))):
                out.append(Rejected(code, CONTRADICTED))
                continue
        # "Nausea without vomiting" (R11.0) where a sentence says "nausea with vomiting"; D50.9
        # "Iron deficiency anemia" where it says "iron deficiency without anemia".
        if any(_says_present(wording, wanted, s) for wording, wanted in _wordings(cs, cs.normalize(code))
               for s in affirmed) or any(_says_without(wording, wanted, s) for wording, wanted in _wordings(
                   cs, cs.normalize(code)) for s in assessed):
            out.append(Rejected(code, CONTRADICTED))
            continue
        # "Chronic maxillary sinusitis" where the note says "acute maxillary sinusitis" and never
        # "chronic".
        wanted = essential_stems(cs.description(code))
        for course in wanted & _COURSES.keys():
            rest = wanted - {course}
            if course not in said and rest and any(
                    _COURSES[course] in s.words and rest <= s.words for s in affirmed):
                out.append(Rejected(code, CONTRADICTED))
                break
    return out


_COURSES = {stem("acute"): stem("chronic"), stem("chronic"): stem("acute")}


def _says_present(wording: str, wanted: frozenset[str], sentence: _Sentence) -> bool:
    """Does the sentence say all the words of a wording "... without X", X not negated, and no
    "without" of its own ("osteoporosis w/o current pathological fracture")?"""
    absent = only_negated_stems(wording)
    return bool(absent) and wanted | absent <= sentence.words and not absent & sentence.negated \
        and not _ABSENCE_CUE.search(sentence.text)


def _says_without(wording: str, wanted: frozenset[str], sentence: _Sentence) -> bool:
    """Does the sentence say a wording's words with one of them absent that the wording has
    present ("Iron deficiency without anemia" against "Iron deficiency anemia")?"""
    gone = (wanted & sentence.negated) - negated_stems(wording)
    return len(wanted) >= 2 and bool(gone) and wanted - gone <= sentence.words and bool(wanted - gone)


_ABSENCE_CUE = re.compile(r"\bwithout\b|\bw/o\b|\bno\b|\bnot\b", re.I)


def certain_part(note: str) -> str:
    """What a note with an assessment that is not a hospital's discharge diagnoses (office,
    clinic and ED notes, and those headed "Diagnosis:") says with certainty: its "probable",
    "suspected", "rule out" ... diagnoses blanked out (`text.without_uncertain`; UNCERTAIN
    above). Any other note as it is."""
    if assessment_start(note) is None or discharge_summary(note):
        return note
    return without_uncertain(note)


def is_diagnosis(cs: CodeSet, code: str) -> bool:
    """A valid code of a condition: not a sign or symptom (chapter 18), not a Z code (chapter 21)."""
    return cs.is_valid(code) and _chapter_kind(cs, code) == "diagnosis"


def alternative_stated(cs: CodeSet, note: str, codes: list[str]) -> list[Rejected]:
    """The diagnoses among `codes` that no affirmed sentence of the note states, where the
    assessment states another code under their parent (OTHER_STATED above): N18.2 "stage 2"
    beside the N18.4 "Chronic kidney disease, stage 4" the assessment names; and a residual
    "Other ..." beside another code of its category that the assessment states, or in an
    encounter note any other (E03.8 "Other specified hypothyroidism" beside E03.9)."""
    def specified(code: str) -> bool:  # an "unspecified" one is the other rules' (less_specific)
        return is_diagnosis(cs, code) and not _GENERIC.search(cs.description(code))

    def alternative(code: str, stated: str) -> bool:  # N18.2 beside N18.31, under N18 "CKD"
        parent = cs.parent(cs.normalize(code))
        return parent is not None and parent in cs.ancestors(cs.normalize(stated)) \
            and not _RESIDUAL.search(cs.description(parent))  # E87 "Other disorders of ..." is a bag

    def denied_by(code: str, stated: str) -> bool:  # N40.0 "without LUTS" beside N40.1 "with LUTS"
        absent = negated_stems(cs.description(code))
        return bool(absent) and absent <= essential_stems(cs.description(stated)) - negated_stems(
            cs.description(stated))

    def said_without(code: str, stated: str) -> bool:  # B27.99 "with other complication" beside B27.90 "without"
        return bool(_WITHOUT.search(cs.description(stated)) and _WITH_COMPLICATIONS.search(cs.description(code)))

    def residual_beside(code: str, other: str) -> bool:  # E03.8 "Other specified ..." beside E03.9
        # (F17.290 "Nicotine dependence, other tobacco product" beside F17.210 "..., cigarettes")
        return bool(_OTHER_CONDITION.match(cs.description(code)) or _OTHER_KIND.search(cs.description(code))) \
            and cs.is_valid(other) \
            and not _OTHER_CONDITION.match(cs.description(other)) and _category(cs, code) == _category(cs, other)

    stated_codes = established_in_assessment(cs, note, codes)
    established = [c for c in stated_codes if specified(c)]
    second_guesses = _second_guesses(cs, note, codes) if encounter_note(note) else set()
    # An encounter's assessment names each condition once: a residual "Other ..." beside another
    # code of its category is a second guess at it. A case report may have both, and often does.
    beside = codes if encounter_note(note) else stated_codes
    affirmed = _affirmed_sentences(cs, note, 0) if beside else []

    assessed = _assessment_sentences(cs, note) if stated_codes else []
    said = {c: _stated_wordings(cs, c, assessed) for c in stated_codes}

    def goes(code: str) -> bool:
        if code in second_guesses:
            return True
        if code in said and specified(code) and any(_states_more(said[o], [said[code]]) for o in said
                                                    if o != code and _category(cs, o) == _category(cs, code)):
            return True  # B08.8 "Foot-and-mouth disease" beside B08.4 "Hand, foot and mouth disease"
        if is_diagnosis(cs, code) and any(alternative(code, e) and said_without(code, e) and _stated_wordings(
                cs, e, assessed, only=True) for e in stated_codes if e != code):
            return True  # the assessment names the condition and nothing more: no complication
        if code not in stated_codes and is_diagnosis(cs, code) and _OTHER_KIND.search(cs.description(code)) \
                and not _stated_wordings(cs, code, affirmed) and any(residual_beside(code, e) for e in beside):
            return True  # an "uncomplicated" residual kind too: F17.290 "..., other tobacco product, uncomplicated"
        if code in stated_codes or not specified(code):
            return False
        if any(alternative(code, e) and denied_by(code, e) for e in established):
            return True
        return not _stated_wordings(cs, code, affirmed) and (
            any(alternative(code, e) for e in established) or any(residual_beside(code, e) for e in beside))

    return [Rejected(c, OTHER_STATED) for c in codes if goes(c)]


def reported_by_stated(cs: CodeSet, note: str, codes: list[str]) -> list[Rejected]:
    """The diagnoses among `codes` that the assessment states only in words the title of another
    diagnosis it states holds, with more, of another category (LESS_SPECIFIC above): E53.8 by its
    term "Vitamin B12 deficiency" beside D51.0 "Vitamin B12 deficiency anemia due to intrinsic
    factor deficiency" for "Pernicious anemia with vitamin B12 deficiency"; G62.9 "Polyneuropathy"
    beside E11.42 "Type 2 diabetes mellitus with diabetic polyneuropathy". The other code reports
    it. Not one the other asks for in a note (N18.4 beside E11.22, I10 beside I16.0) or that asks
    for the other, nor one of a category any of `codes` asks for (N18.9 beside E11.22, which asks
    for a stage of N18). Within a category the less-specific and alternative rules decide."""
    assessed = _assessment_sentences(cs, note)
    stated = [c for c in codes if is_diagnosis(cs, c)] if assessed else []
    said = {c: words for c in stated if (words := _stated_wordings(cs, c, assessed))}

    def reports(other: str, code: str) -> bool:
        held = [stated_stems(cs.description(cs.normalize(other))), *said[other]]
        return _category(cs, other) != _category(cs, code) and not _asks_for(cs, code, other) \
            and all(any(w < h for h in held) for w in said[code])

    def asked(code: str) -> bool:  # N18.9 beside E11.22: its category is the one asked for
        return any(_asks_for(cs, c, code, category=True) for c in codes if c != code and cs.is_valid(c))

    return [Rejected(c, LESS_SPECIFIC) for c in said
            if any(reports(o, c) for o in said if o != c) and not asked(c)]


def _second_guesses(cs: CodeSet, note: str, codes: list[str]) -> set[str]:
    """The diagnoses and symptoms among `codes` that the assessment mentions only in items
    stating another code (a symptom: a diagnosis), and states nowhere: K52.9 "Noninfective
    gastroenteritis" where the item "Viral
    gastroenteritis" states A08.4, H10.9 beside "Viral conjunctivitis" (B30.9). An encounter's
    assessment codes each item once. Not a code another one asks for (the organism of a UTI,
    the stage of a CKD), nor one a combination code reports (I10 where the item "Hypertensive
    heart and kidney disease" states I11.9: the rules combine it into I13.0)."""
    affirmed = _assessment_sentences(cs, note)
    valid = [c for c in codes if cs.is_valid(c)]
    stated = [{c for c in valid if _stated_wordings(cs, c, [s])} for s in affirmed]
    everywhere = set().union(*stated) if stated else set()
    span = assessment_span(note)
    assessed = note[span[0]:span[1]] if span else ""
    out = set()
    for code in valid:
        if code in everywhere or _chapter_kind(cs, code) not in ("diagnosis", "symptom") \
                or _ELSEWHERE.search(cs.description(code)) \
                or _pain_site(cs, cs.normalize(code)) or _of_a_combination(cs, code) \
                or any(_asks_for(cs, d, code) or _more_specific(cs, d, code) for d in valid if d != code) \
                or any(_excluded_by(cs, code, d) for d in everywhere):
            continue  # a pain, a combination or its part, a generic or excluded code: the other rules decide
        words = _condition_words(cs, cs.normalize(code))
        # A residual's title is no wording (`_wordings`), but the note may say it: "Major osseous
        # defect, other site" is M89.78.
        title = essential_stems(cs.description(code)) if _RESIDUAL.search(cs.description(code)) else None
        items = [i for i, s in enumerate(affirmed) if words & s.words]
        # A plan under its own heading diagnoses nothing ("Repeat liver enzymes in 6 months").
        items = [i for i in items if affirmed[i].text in assessed] or items
        # A symptom goes only beside a diagnosis its item states ("COVID-19, mild illness": no
        # R69 "Illness, unspecified"), or a sibling where it is the residual "Other ..." (R31.29
        # "Other microscopic hematuria" beside "Asymptomatic microscopic hematuria", R31.21); an
        # item may list several symptoms ("nausea, vomiting and diarrhea").
        residual = bool(_RESIDUAL.search(cs.description(code)))
        others = [{c for c in stated[i] - {code} if is_diagnosis(cs, c) or is_diagnosis(cs, code)
                   or residual and cs.parent(cs.normalize(c)) == cs.parent(cs.normalize(code))} for i in items]
        if items and all(other and not (title and title <= affirmed[i].words and _RESIDUAL.search(affirmed[i].text))
                         for i, other in zip(items, others)):
            out.add(code)
    return out


@lru_cache(maxsize=8)
def _combination_categories(cs: CodeSet) -> frozenset[str]:
    """The combination categories and the categories they report together (I13, I11, I12)."""
    return frozenset(c for comb in _combinations(cs) for c in (comb.category, *comb.parts))


@lru_cache(maxsize=65536)
def _of_a_combination(cs: CodeSet, code: str) -> bool:
    """Is the code a combination code (I11-I13) or one that a combination reports (I10, N18.31,
    I50.32 for I13.0)? The rules combine them (`_combine`), however the assessment words it."""
    return any(a in _combination_categories(cs) for a in cs.ancestors(code)) or any(
        _names(cs, code, comb.cause) or any(_within(code, need) for need in comb.needs)
        for comb in _combinations(cs))


def wrong_side(cs: CodeSet, note: str, codes: list[str]) -> list[Rejected]:
    """The codes among `codes` for a side of the body that the note never names, where it names
    another (WRONG_SIDE above)."""
    named = _sides(cs, note)
    if not named:
        return []
    return [Rejected(c, WRONG_SIDE) for c in codes
            if cs.is_valid(c) and not _code_sides(cs, cs.normalize(c)) <= named]


def _sides(cs: CodeSet, text: str) -> frozenset[str]:
    """"right" and "left" as the text names them; "bilateral", and "both" before the plural of a
    body part the code set gives a side ("both eyes", "both lower limbs"), name both."""
    out = {m.group(1).lower() for m in _SIDE.finditer(text)}
    if out - {"right", "left"} or _both_parts(cs, text):
        return frozenset({"right", "left"})
    return frozenset(out)


def _both_parts(cs: CodeSet, text: str) -> bool:
    return any(singulars(w) & _sided_parts(cs) for m in _BOTH.finditer(text) for w in m.groups() if w)


@lru_cache(maxsize=8)
def _sided_parts(cs: CodeSet) -> frozenset[str]:
    """The words the code set writes right after "right" or "left" ("eye", "knee", "limb")."""
    return frozenset(m.group(1).lower() for side in ("right ", "left ")
                     for _, description in cs.descriptions_containing(side)
                     for m in _AFTER_SIDE.finditer(description))


@lru_cache(maxsize=65536)
def _code_sides(cs: CodeSet, code: str) -> frozenset[str]:
    """The sides a code is for, where its parent also holds a code for another side; none for a
    code that names no side, or names both in two roles ("Unqualified visual loss, right eye,
    normal vision left eye")."""
    sides = _own_sides(cs, code)
    # A code with a 7th character sits under a code that holds only its encounters (S93.402A,
    # D, S): the codes for the other sides are one level up (S93.401A under S93.40).
    parents = cs.ancestors(code)[1 if cs.seventh_variants(code) else 0:]
    parent = next(iter(parents), None)
    if not sides or parent is None:
        return frozenset()
    if any(_own_sides(cs, other) not in (frozenset(), sides)
           for other in cs.billable_descendants(parent) if other != code):
        return sides
    return frozenset()


def _own_sides(cs: CodeSet, code: str) -> frozenset[str]:
    words = {m.group(1).lower() for m in _SIDE.finditer(cs.description(code))}
    if words == {"right"} or words == {"left"}:
        return frozenset(words)
    if words and words <= {"bilateral", "bilaterally"}:
        return frozenset({"right", "left"})
    return frozenset()


def stated_in_assessment(cs: CodeSet, note: str, candidates: list[str], codes: list[str]) -> list[str]:
    """The retrieved `candidates` that the note's assessment states in the code set's own words,
    when nothing of their category is among `codes` yet: a billable code, not a residual "Other
    ..." by its own title, with a wording that one affirmed sentence of the assessment states
    (`_stated_wordings`: "Permanent atrial fibrillation"; an "unspecified" code only through an
    item of its one word, "Hyperlipidemia.") and not all within a wording of one of `codes`; of
    a category, the one stating most words. A coder codes the
    diagnosis the physician states; the ranker's threshold, fitted on case reports, can leave it
    out."""
    affirmed = _assessment_sentences(cs, note)
    if not affirmed:
        return []
    valid = [c for c in codes if cs.is_valid(c)]
    # A category is taken by a code the assessment states, or by a guess where it states none
    # of the category ("without lower urinary tract symptoms" gives way to the "with" it states),
    # but for a code that states more of the same item ("Hand, foot and mouth disease", B08.4,
    # beyond B08.8's "Foot-and-mouth disease").
    stated_by = {c: said for c in valid if (said := _stated_wordings(cs, c, affirmed))}
    taken = {_category(cs, c) for c in stated_by}
    chosen_words = [(_category(cs, c), stated_stems(w))
                    for c in valid for w in [cs.description(c), *cs.inclusion_terms(c)]]
    best: dict[str, list[tuple[int, str]]] = {}  # category -> (words stated, code)
    for code in candidates:
        description = cs.description(code)
        if not cs.is_billable(code):
            continue
        category = _category(cs, code)
        # (A generic rival is the specific-code rule's: `specific_in_assessment`.)
        rivals = [w for c, w in stated_by.items() if _category(cs, c) == category]
        generic = any(_GENERIC.search(cs.description(c)) for c in stated_by if _category(cs, c) == category)
        if code in valid or category in taken and (generic or not _states_more(_stated_wordings(cs, code, affirmed),
                                                                                rivals)) and not all(
                _another_complication(cs, code, c) for c in stated_by if _category(cs, c) == category):
            continue
        # Stated, and not just part of what a chosen code says ("malignant neoplasm" is C61's
        # "malignant neoplasm of prostate", not C80.1).
        # A guess of its category says nothing against it (N40.0 "without ..." for N40.1 "with ...").
        # An "unspecified" code only where the assessment says no more than its one word
        # ("Hyperlipidemia."): where it says more, that more has a code of its own.
        stated = max((len(wanted) for wanted in _stated_wordings(cs, code, affirmed,
                                                                  only=bool(_UNSPECIFIED.search(description)))
                      if not any(wanted <= said for of, said in chosen_words if of != category or of in taken)),
                     default=0)
        if stated:
            # As many words said, the code that names no "other part" the note did not name:
            # O23.42 "Unspecified infection of urinary tract in pregnancy, second trimester", not
            # O23.32 "Infections of other parts of urinary tract in pregnancy, ...".
            best.setdefault(category, []).append(((stated, not _OTHER_WORD.search(description)), code))
    out = []
    for options in best.values():  # the code that says most; none where two say as much
        options.sort(reverse=True)
        if len(options) == 1 or options[0][0] > options[1][0]:
            out.append(options[0][1])
    return [c for c in out if not _agent_named_by(cs, c, [o for o in valid + out if o != c])]


def _another_complication(cs: CodeSet, code: str, other: str) -> bool:
    """Are `code` and `other` two "with" codes of one condition that name different things
    after "with": E11.65 "Type 2 diabetes mellitus with hyperglycemia" beside E11.22 "... with
    diabetic chronic kidney disease"? The guidelines code as many of those as the note states (a
    category's codes are otherwise one condition told apart, one code a condition)."""
    mine, theirs = ([part.strip() for part in _WITH.split(cs.description(c), maxsplit=1)] for c in (code, other))
    if len(mine) != 2 or len(theirs) != 2 or not all(mine + theirs) or mine[0].lower() != theirs[0].lower() \
            or any(_GENERIC.search(cs.description(c)) for c in (code, other)):
        return False
    a, b = stated_stems(mine[1]), stated_stems(theirs[1])
    return bool(a - b) and bool(b - a)


def with_siblings(cs: CodeSet, codes: list[str], family: int = 6) -> list[str]:
    """`codes` and, after them, the billable siblings of each (the codes under its parent) where
    the parent holds at most `family` of them, 7th characters aside (models/seventh.py chooses
    those): the code-set search can rank the one a note states below its sibling (A04.71
    "..., recurrent" above A04.72 for "Clostridioides difficile colitis")."""
    out = dict.fromkeys(codes)
    for code in codes:
        parent = cs.parent(code) if cs.is_valid(code) and not cs.seventh_variants(code) else None
        if parent and len(siblings := cs.billable_descendants(parent)) <= family:
            out.update(dict.fromkeys(siblings))
    return list(out)


def _states_more(mine: list[frozenset[str]], theirs: list[list[frozenset[str]]]) -> bool:
    """Does a code stated in the wordings `mine` say more than each code stated in `theirs`: is
    each wording of theirs a part of one of mine, smaller than it?"""
    return bool(mine) and all(any(w < m for m in mine) for said in theirs for w in said)


def established_in_assessment(cs: CodeSet, note: str, codes: list[str]) -> frozenset[str]:
    """The diagnoses among `codes` that one affirmed sentence of the note's assessment states in
    a wording of two or more essential words: the physician has established them, so
    `apply(established=...)` lets them displace a generic code and a pain at their site however
    sure the selector was of them. A residual "Other ..." code only through its inclusion terms
    (`_wordings`): "Other specified disorders of the skin" says what L98.9 says. A combination
    code is established where the assessment states its category's title ("Hypertensive heart
    disease" for I11.0): the codes the note pairs with it choose the child. Where it establishes
    no diagnosis, the signs and symptoms it states instead."""
    affirmed = _assessment_sentences(cs, note)
    if not affirmed:
        return frozenset()
    combined = {comb.category for comb in _combinations(cs)}
    diagnoses = frozenset(c for c in codes if is_diagnosis(cs, c) and (_stated_wordings(cs, c, affirmed) or any(
        a in combined and _stated_wordings(cs, a, affirmed) for a in cs.ancestors(c))))
    if diagnoses:
        return diagnoses
    # No diagnosis established: the symptoms the assessment (not its plan: "acetaminophen for
    # fever") states are the visit's conclusion ("Right lower quadrant abdominal pain;
    # appendicitis ruled out" establishes R10.31).
    span = assessment_span(note)
    assessed = [s for s in affirmed if span and s.text in note[span[0]:span[1]]]
    return frozenset(c for c in codes if assessed and cs.is_valid(c) and _chapter_kind(cs, c) == "symptom"
                     and _stated_wordings(cs, c, assessed))


def _stated_wordings(cs: CodeSet, code: str, affirmed: list[_Sentence], only: bool = False) -> list[frozenset[str]]:
    """The essential words of each wording of `code` (`_wordings`) that one affirmed sentence
    states: enough of them (`_enough_words`: two, or one said alone), and for a "... NOS"
    wording nothing more that the code set codes apart (`_not_otherwise_specified`). `only`:
    a sentence that says nothing more but its cause (`_says_no_more`), as an "unspecified" code
    asks: "Atopic dermatitis, moderate flare" states L20.9; where a sentence says more, that more
    has a code."""
    code = cs.normalize(code)
    # What the code's own title says is no more than it ("Menorrhagia with regular cycles" says
    # N92.0's "Menorrhagia NOS" and its title's "with regular cycle").
    plain = lambda: _plain_qualifiers(cs, _category(cs, code)) | stated_stems(cs.description(code))  # noqa: E731
    return [wanted for wording, wanted in _wordings(cs, code)
            if any(_enough_words(wording, wanted, sentence, plain) and _states(wording, wanted, sentence)
                   and _not_otherwise_specified(cs, code, wording, wanted, sentence)
                   and (not only or _says_no_more(wanted, sentence, plain())) for sentence in affirmed)]


@lru_cache(maxsize=4096)
def _plain_qualifiers(cs: CodeSet, category: str) -> frozenset[str]:
    """The qualifiers (`_QUALIFYING`) that no code of the category says (in its title or
    inclusion terms): "acute" says nothing more about urticaria (L50 has no acute code), so
    "Acute urticaria" states L50.9 "Urticaria, unspecified"; "chronic" is L50.8's. A flare is
    an exacerbation, which J45 codes and L20 does not."""
    said = [w for c in cs.billable_descendants(category)
            for w in (cs.description(c), *cs.inclusion_terms(c))]
    coded = frozenset().union(*(key_words(w) for w in said))
    if _EXACERBATION & coded:  # a flare is an exacerbation: "Asthma flare" is not J45.909's
        coded |= _FLARE
    return _QUALIFYING - coded


def _not_otherwise_specified(cs: CodeSet, code: str, wording: str, wanted: frozenset[str],
                             sentence: _Sentence) -> bool:
    """A wording "... NOS" holds where the sentence says nothing more that the code set codes
    apart: no word of another code of its category or of the categories its Excludes1 notes
    name (F32.9's "Major depression NOS" is not "Major depressive disorder, recurrent episode,
    moderate": F32 has "moderate" and excludes F33 "recurrent"). "Migraine with aura, two
    attacks a month" is G43.109's "Migraine with aura NOS"; a note that writes "NOS" says so."""
    if not _NOS.search(wording) or _NOS.search(sentence.text):
        return True
    own = stated_stems(cs.description(code))  # the code's own title says no more than it
    return not sentence.beyond(wanted, own, _STATUS, _SIDE_WORDS, _PATIENT) & _distinguishing_words(cs, code)


@lru_cache(maxsize=4096)
def _distinguishing_words(cs: CodeSet, code: str) -> frozenset[str]:
    """The key words of the billable codes of `code`'s category and of the categories the
    Excludes1 notes on `code` and its ancestors name."""
    categories = {_category(cs, code)}
    for note in [n for link in [code, *cs.ancestors(code)] for n in cs.record(link).excludes1]:
        categories.update(end[:3] for lo, hi in note_ranges(note) for end in (lo, hi) if cs.is_valid(end[:3]))
    return frozenset().union(*(key_words(cs.description(c)) for category in categories
                               for c in cs.billable_descendants(category)))


def _enough_words(wording: str, wanted: frozenset[str], sentence: _Sentence,
                  plain: Callable[[], frozenset[str]]) -> bool:
    """Two essential words or more; or one, where the wording and the sentence both say "without
    complications" ("Herpes zoster of the right T6 dermatome, uncomplicated" states B02.9
    "Zoster without complications"), or where the sentence says that word and nothing else but
    how the condition is doing ("Hyperlipidemia, at goal." states E78.5 "Hyperlipidemia,
    unspecified"), that its cause is unknown, or a qualifier its category has no code for
    (`plain`, `_plain_qualifiers`: "Acute urticaria, trigger unknown" states L50.9): a lone word
    is too often a part of another diagnosis."""
    return len(wanted) >= 2 or (len(wanted) == 1 and (
        bool(_WITHOUT.search(wording)) and bool(_WITHOUT.search(sentence.text))
        or _says_only(wanted, sentence, plain())))


def _says_no_more(wanted: frozenset[str], sentence: _Sentence, plain: frozenset[str]) -> bool:
    """Does the sentence say nothing more than the condition (`_says_only`) but its cause, which
    is coded apart where it is coded: "Chronic gastritis due to H. pylori infection, without
    bleeding" states K29.50 "Unspecified chronic gastritis without bleeding" (and B96.81 the
    organism)."""
    cause = frozenset().union(*(key_words(m.group(1)) for m in _CAUSE.finditer(sentence.text)))
    return _says_only(wanted, sentence, plain | (cause - wanted))


# "due to H. pylori infection": what a condition is due to, to the end of its clause.
_CAUSE = re.compile(r"\b(?:due to|secondary to|caused by)\b([^,;()]*)", re.I)


def _says_only(wanted: frozenset[str], sentence: _Sentence, plain: frozenset[str]) -> bool:
    """Does the sentence say those words and nothing else but how the condition is doing, which
    side (`_STATUS`), how bad ("Mild to moderate dehydration"), what is absent ("Panic disorder
    without agoraphobia" says panic disorder only), that the cause is unknown, the weeks of a
    pregnancy (coded apart, Z3A) and the `plain` qualifiers?"""
    weeks = frozenset().union(*(key_words(m.group()) for m in _GESTATION_WEEKS.finditer(sentence.text)))
    return not sentence.beyond(wanted, _STATUS, _SIDE_WORDS, _MILDNESS, _UNKNOWN_CAUSE, _PATIENT, sentence.negated,
                               plain, weeks)


@lru_cache(maxsize=65536)
def _wordings(cs: CodeSet, code: str) -> tuple[tuple[str, frozenset[str]], ...]:
    """Each wording of a code with the essential words it asks for: its description, inclusion
    terms and Includes note ("hypertension" at I10), each once per alternative of a slashed pair
    ("Grade II hemorrhoids" and "stage II hemorrhoids" for "Grade/stage II"), and the inclusion terms of its ancestors
    below the category, which hold for every code under them, with the code's own side ("Sprain
    of talofibular ligament", under S93.49, says S93.491A "Sprain of other ligament of right
    ankle" where the note says "right"), and for a code with a side its parent's title with that
    side. A residual "Other ..." code's own description is none of them: it says no more than
    the generic code of its category."""
    terms = cs.inclusion_terms(code)
    said = [*terms, *cs.includes(code), *_category_names(cs, code)]
    # "Chronic constipation" is K59.09's; B96.81's title less "... classified elsewhere" is its own.
    if not _RESIDUAL.search(plain_wording(cs.description(code))) or _other_of_its_own(cs, code):
        said.insert(0, cs.description(code))
    said = [plain_wording(w) for w in said]  # "..., not specified as traumatic": not for the note to say
    # An "Other specified ..." term says a kind the note must name: E13.329-'s "Other specified
    # diabetes mellitus with nonproliferative diabetic retinopathy NOS" is no plain diabetes.
    said = [w for w in said if not _OTHER_SPECIFIED.match(w)]
    # (`essential_stems` leaves out what square brackets hold: "Panic disorder [episodic
    # paroxysmal anxiety]" is stated by "Panic disorder".)
    own = [(w, stated_stems(w)) for term in said for w in slash_alternatives(term)]
    # A bracketed name in place of what it names: "Croup" states J05.0 "Acute obstructive laryngitis [croup]".
    own += [(alt, stated_stems(alt)) for w, _ in own for alt in bracket_alternatives(w)]
    if not _of_a_combination(cs, code):  # "heart and chronic kidney disease" means both
        own += [(alt, stated_stems(alt)) for w, _ in own for alt in and_alternatives(w)]
    own += [(w, stated_stems(bare)) for w, _ in own if (bare := _without_encounter(cs, code, w)) != w]
    sides = _code_sides(cs, code)
    side = ({_BILATERAL} if len(sides) == 2 else {stem(next(iter(sides)))} if sides else set())
    parent = next(iter(cs.ancestors(cs.ancestors(code)[0] if cs.seventh_variants(code) else code)), None)
    # A term from above holds for every code under it with what the code's own title adds:
    # "Clostridioides difficile colitis" (A04.7) is A04.72, and A04.71 only where the note says
    # "recurrent".
    adds = side | _title_adds(cs, code, parent)
    inherited = [(w, stated_stems(w) | adds) for term in cs.inclusion_terms(code, inherited=True)[len(terms):]
                 if not _OTHER_SPECIFIED.match(term) for w in slash_alternatives(plain_wording(term))]
    # The parent's title with the code's side: "Carpal tunnel syndrome" + right is G56.01.
    if side and parent and not _RESIDUAL.search(cs.description(parent)):
        title = plain_wording(cs.description(parent))
        inherited.append((title, stated_stems(title) | side))
    return tuple(own + inherited)


# What a title says is absent is nothing a note must say: "..., not intractable", "... without gangrene".
_ABSENT_QUALIFIER = re.compile(r",?\s*\b(?:without|not)\b[^,]*", re.I)


def _title_adds(cs: CodeSet, code: str, parent: str | None) -> frozenset[str]:
    """The words a code's title adds to its `parent`'s title (above its 7th character's code),
    where it holds all of the parent's (A04.71 "Enterocolitis due to Clostridium difficile,
    recurrent": recurrent), less its 7th character's meaning and what it says is absent."""
    if not parent:
        return frozenset()
    mine = stated_stems(_ABSENT_QUALIFIER.sub("", plain_wording(_without_encounter(cs, code, cs.description(code)))))
    theirs = stated_stems(_ABSENT_QUALIFIER.sub("", plain_wording(cs.description(parent))))
    return mine - theirs if theirs <= mine else frozenset()


def _category_names(cs: CodeSet, code: str) -> list[str]:
    """The other names a category's Includes note gives its title, for the code that holds the
    title "NOS": K44 "Diaphragmatic hernia" includes "hiatus hernia (esophageal) (sliding)", and
    K44.9's "Diaphragmatic hernia NOS" is where a plain hiatal hernia goes."""
    category = _category(cs, code)
    plain = f"{cs.description(category)} NOS".lower()
    if category == code or not any(t.lower() == plain for t in cs.inclusion_terms(code)):
        return []
    # Not a name whose one letter is its meaning and no key word ("influenza A (non-novel)" under
    # J10 would read as plain "influenza", which is J11's).
    return [name for name in cs.includes(category)
            if not (letters := _LONE_LETTER.findall(_PARENS.sub("", name)))
            or {stem(x.lower()) for x in letters} <= essential_stems(name)]


def _without_encounter(cs: CodeSet, code: str, wording: str) -> str:
    """The wording without its 7th character's meaning (", initial encounter"): a note says
    "Concussion without loss of consciousness" in the ED, and the retriever has already chosen
    the 7th character the visit supports (models/seventh.py). The whole wording stays a wording
    too: where the note says "closed ... initial encounter", it states more."""
    variant = cs.seventh_variants(code).get(code[-1]) if len(code_key(code)) == 7 else None
    if variant and variant[0] == code and wording.lower().endswith(", " + variant[1].lower()):
        return wording[: -len(variant[1]) - 2]
    return wording


@lru_cache(maxsize=65536)
def _other_of_its_own(cs: CodeSet, code: str) -> bool:
    """Does a residual "Other ..." title name what no other code of its category names? J30.2
    "Other seasonal allergic rhinitis" is the only seasonal one: its "other" sets it apart from
    pollen (J30.1), and "Seasonal allergic rhinitis" states it. E78.49 "Other hyperlipidemia" says
    no more than E78.5 "Hyperlipidemia, unspecified". H10.02- "Other mucopurulent conjunctivitis"
    is the only mucopurulent one of H10 (its own sides aside)."""
    description = cs.description(code)
    if not _OTHER_CONDITION.match(description) or _OTHER_SPECIFIED.match(description):
        return False
    # Not the same title for another side (H10.021 beside H10.023 "..., bilateral").
    parent = cs.ancestors(code)[1 if cs.seventh_variants(code) else 0] if _code_sides(cs, code) else None
    siblings = [c for c in cs.billable_descendants(_category(cs, code))
                if c != code and not (parent and parent in cs.ancestors(c))]
    return bool(_singular_key_words(description) - set().union(*(_singular_key_words(cs.description(c))
                                                                  for c in siblings)))


@lru_cache(maxsize=262144)
def _singular_key_words(text: str) -> frozenset[str]:
    """`key_words` with a plural as its singular: S52.59-'s "Other fractures of ..." names no
    more than the "fracture" of its category's other codes."""
    singular = plural_twins(text)
    return frozenset(singular.get(w, w) for w in key_words(text))


def wordings(cs: CodeSet, code: str) -> list[str]:
    """The code's wordings but its description (`_wordings`): the words a note may say it in,
    where the pipeline looks for its evidence too. Not the halves of an "X and Y" title: as
    evidence, "dependence on machines" is too little of Z99.89 "Dependence on other enabling
    machines and devices"; an item of a list is ("Strain of muscle of lower back" is S39.012A's
    "Strain of muscle, fascia and tendon of lower back"), and so is either of two names joined
    ("Hyponatremia" is E87.1's "Hypo-osmolality and hyponatremia": `two_names`)."""
    description = cs.description(code)
    said = _wordings(cs, cs.normalize(code))
    either = {alt for w, _ in said if not and_list(w) and not two_names(w) for alt in and_alternatives(w)}
    out = [w for w, _ in said if w != description and w not in either]
    # The 7th character's meaning is the retriever's choice (models/seventh.py), not words the
    # note must say: "Heat exhaustion" is the evidence of T67.5XXA "Heat exhaustion,
    # unspecified, initial encounter".
    bare = [b for w in [description, *out] if (b := _without_encounter(cs, code, w)) != w]
    return list(dict.fromkeys(out + bare))


_UNILATERAL, _BILATERAL = stem("unilateral"), stem("bilateral")
_PREGNANT = stem("pregnancy")
_SEX = frozenset({stem("male"), stem("female")})  # the patient's, in every sentence
_PATIENT = _SEX | {_PREGNANT}  # what every sentence says of the patient
_SIDE_WORDS = frozenset({_UNILATERAL, _BILATERAL, stem("left"), stem("right")})


class _Sentence(NamedTuple):
    words: set[str]  # key words of its affirmed clauses, with their qualifiers (a plural's singular too)
    negated: frozenset[str]  # what those qualifiers say is absent ("without aura": aura)
    text: str  # the whole sentence as the note writes it
    relative: bool  # its affirmed clauses are about a relative's health ("Family history of ...")
    twins: frozenset[tuple[str, str]] = frozenset()  # (plural, singular) stems of its words: one word

    def beyond(self, *said: frozenset[str]) -> set[str]:
        """Its words but those `said` and the other form of each ("cycles" for "cycle")."""
        known = frozenset().union(*said)
        same = {p for p, s in self.twins if s in known} | {s for p, s in self.twins if p in known}
        return self.words - known - same


def _assessment_sentences(cs: CodeSet, note: str) -> list[_Sentence]:
    """The sentences of the note's assessment (`_affirmed_sentences`); [] without an assessment."""
    start = assessment_start(note)
    return [] if start is None else _affirmed_sentences(cs, note, start)


def _affirmed_sentences(cs: CodeSet, note: str, start: int) -> list[_Sentence]:
    """The sentences of the note from `start`, read as the code set writes a condition: each
    affirmed clause with the qualifiers after it ("Migraine" + "without aura"), "unilateral"
    where it names one side ("Primary osteoarthritis of left knee" states M17.12 "Unilateral
    primary osteoarthritis, left knee") and "bilateral" where it says "both" of a body part
    ("both knees"), and the patient's sex ("Erectile dysfunction" in a man's note states N52.9
    "Male erectile dysfunction, unspecified"). A sentence about a relative's health says so
    (`relative`): it states a "Family history of ..." code, never the patient's condition."""
    spans = [(a, qualified_end(note, b)) for a, b in clauses(note) if a >= start]
    relatives = family_history_statements(note)
    sex = patient_sex(note)
    # A pregnant patient's condition is one "in pregnancy" (O24.410 "Gestational diabetes mellitus
    # in pregnancy, diet controlled", not "in childbirth"), as her sex is hers.
    pregnant = _weeks_pregnant(note)[0] is not None
    out = []
    for s, e in sentences(note):
        inside = [(a, b) for a, b in spans if s <= a and a < e]
        texts = [note[a:b] for a, b in inside]
        if inside and (words := set().union(*(key_words(t) for t in texts))):
            if len(_sides(cs, text := " ".join(texts))) == 1:
                words.add(_UNILATERAL)
            elif _both_parts(cs, text):
                words.add(_BILATERAL)
            if sex:
                words.add(stem(sex))
            if pregnant:
                words.add(_PREGNANT)
            relative = all(any(x <= a < y for x, y in relatives) for a, _ in inside)
            twins = plural_twins(" ".join(texts))
            words |= set(twins.values())
            negated = frozenset().union(*(negated_stems(t) for t in texts))
            negated |= {twins[w] for w in negated if w in twins}
            out.append(_Sentence(words, negated, note[s:e], relative, frozenset(twins.items())))
    return out


def _states(wording: str, wanted: frozenset[str], sentence: _Sentence) -> bool:
    """Does the sentence say the wording: every essential word, and absent what the wording says
    is absent, present what it says is present ("Migraine without aura" is not "with aura")? A
    sentence about a relative says only a family history ("Family history of premature coronary
    disease" is not I25.10's "Coronary (artery) disease")."""
    if sentence.relative and not reports_family_history(wording):
        return False
    if _WITH_COMPLICATIONS.search(wording) and _WITHOUT.search(sentence.text):
        return False  # "complications" is no key word: E11.8 "with unspecified complications"
    absent = negated_stems(wording)
    if wanted <= sentence.words and absent <= sentence.negated:
        says_absent = True
    else:  # "without rupture of the eardrum" says H66.001's "without spontaneous rupture of ear drum"
        only_absent = only_negated_stems(wording)
        says_absent = (wanted - only_absent) <= sentence.words and _says_absent(wording, only_absent, sentence)
    return says_absent and not (wanted - absent) & sentence.negated and _numbers_in_place(wording, sentence.text)


def _says_absent(wording: str, absent: frozenset[str], sentence: _Sentence) -> bool:
    """Does the sentence say what a wording says is absent, in fewer words: one of them negated
    ("without rupture of the eardrum" for "without spontaneous rupture of ear drum"), or the
    whole condition "uncomplicated" ("Acute uncomplicated sigmoid diverticulitis" for K57.32's
    "without perforation or abscess"), and none of them present ("with abscess")? A wording that
    says "without complications" itself answers the sentence's: E11.A's "without complications
    in remission" is not "Type 2 diabetes without complications"."""
    uncomplicated = bool(_WITHOUT.search(sentence.text)) and not _WITHOUT.search(wording)
    return bool(absent) and bool(absent & sentence.negated or uncomplicated) \
        and not absent & (sentence.words - sentence.negated)


def _numbers_in_place(wording: str, text: str) -> bool:
    """Does each number of the wording stand beside one of its neighbouring words in the text?
    "Chronic kidney disease, stage 2" wants "stage 2", not the 2 of "Type 2 diabetes ... stage 4";
    "Type 2 diabetes mellitus" is "T2DM" too (2 beside diabetes)."""
    words = [stem(w) for w in content_words(wording)]
    numbers = [i for i, w in enumerate(words) if any(ch.isdigit() for ch in w)]
    if not numbers:
        return True
    said = [stem(w) for w in content_words(text)]
    pairs = {frozenset(p) for p in zip(said, said[1:])}
    return all(any(frozenset((words[i], words[j])) in pairs for j in (i - 1, i + 1) if 0 <= j < len(words))
               for i in numbers)


def specific_in_assessment(cs: CodeSet, note: str, codes: list[str]) -> dict[str, str]:
    """{a generic code ("unspecified", "without complications"): the code of its category that
    the note's assessment states}: a
    billable code with a wording (description or inclusion term) that holds all the essential
    words of one of the generic code's wordings and more, every one in one affirmed sentence of
    the assessment ("Permanent atrial fibrillation": I48.21 for I48.91; "Chronic kidney disease,
    stage 4": N18.4 for N18.9). The one matching the most words; none where two tie. Only the
    assessment, where the physician states the diagnosis: matched anywhere in a case report, the
    same test picked a code its annotators did not in 3 of 4 cases (CodiEsp train)."""
    affirmed = _assessment_sentences(cs, note)
    if not affirmed:
        return {}
    out = {}
    for code in codes:
        if cs.is_valid(code) and _GENERIC.search(cs.description(code)):
            specific = _stated_specific(cs, cs.normalize(code), affirmed)
            if specific:  # also where it is among `codes`: the generic code beside it goes
                out[code] = specific
    return out


def _stated_specific(cs: CodeSet, code: str, affirmed: list[_Sentence]) -> str | None:
    category = _category(cs, code)
    # "and" as "and/or" (`and_alternatives`), but in the combination categories (I11-I13).
    either = category not in _combination_categories(cs)

    def said_by(wordings: list[str]) -> list[str]:
        wordings = [plain_wording(w) for w in wordings]
        return wordings + [alt for w in wordings for alt in and_alternatives(w)] * either

    own = [(w, stated_stems(w)) for w in said_by([cs.description(code), *cs.inclusion_terms(code)])]
    said = set().union(*(w for _, w in own))

    def says_more(wanted: frozenset[str], sentence: _Sentence) -> bool:
        # A wording that holds the generic code's words and more, or one said beside them in the
        # same sentence: "Pernicious anemia with vitamin B12 deficiency" is D51.0 ("Pernicious
        # anemia"), not D51.9 "Vitamin B12 deficiency anemia, unspecified".
        return any(w <= wanted or _states(text, w, sentence) for text, w in own)

    scored = []
    for other in cs.billable_descendants(category):
        if other == code:
            continue
        best, cover = 0, 0
        residual = bool(_RESIDUAL.search(cs.description(other)))  # its own terms say what it holds
        # An "unspecified" code only where it holds the generic code's words: I47.9 "Paroxysmal
        # tachycardia, unspecified" does not say I47.10's "Supraventricular tachycardia".
        generic = bool(_GENERIC.search(cs.description(other)))
        wordings = said_by([cs.description(other)] * (not residual) + cs.inclusion_terms(other))
        words = set().union(*(stated_stems(w) for w in wordings))
        for wording in wordings:
            wanted = stated_stems(wording)
            for sentence in affirmed:
                if wanted - said and _states(wording, wanted, sentence) and (
                        any(w <= wanted for _, w in own) if generic else says_more(wanted, sentence)):
                    # As many words stated: the code whose wordings hold more of the sentence
                    # ("Simple febrile seizure": R56.00's "Simple febrile convulsions" and
                    # "Febrile seizure NOS", not R56.01's "Complicated febrile seizure").
                    best, cover = max((best, cover), (len(wanted), len(words & sentence.words)))
        if best:
            scored.append(((best, cover), other))
    scored.sort(reverse=True)
    if not scored or (len(scored) > 1 and scored[0][0] == scored[1][0]):
        return None
    return scored[0][1]


# Words that say how, where or how badly, not what: "Acute otitis externa" does not name R52's
# "Acute pain NOS", nor "Chronic kidney disease" "Chronic fatigue".
_FLARE, _EXACERBATION = frozenset({stem("flare")}), frozenset({stem("exacerbation")})
_QUALIFYING = frozenset(stem(w) for w in (
    "acute", "subacute", "chronic", "recurrent", "persistent", "generalized", "localized", "primary",
    "secondary", "mild", "moderate", "severe", "left", "right", "bilateral", "unilateral", "multiple",
    "flare"))


# A pain is named only where the assessment says pain (`_named`).
_PAIN = frozenset({stem("pain")})
# How bad, where the code set has no word for it ("Mild to moderate dehydration" is E86.0).
_MILDNESS = frozenset(stem(w) for w in ("mild", "moderate"))
# Words that say its cause is not known, which is what an "unspecified" code codes ("Acute
# urticaria, trigger unknown").
_UNKNOWN_CAUSE = frozenset(stem(w) for w in ("unknown", "unclear", "undetermined", "trigger", "cause", "etiology"))
# Words that say how a condition is doing, not what it is ("Hyperlipidemia, at goal"), and the
# heading's own ("Assessment: pneumonia.").
_STATUS = frozenset(stem(w) for w in (
    "stable", "controlled", "goal", "improved", "improving", "unchanged", "acceptable", "well",
    "resolving", "continue", "continued", "monitor", "monitoring", "assessment", "impression", "diagnosis"))


def _named(cs: CodeSet, code: str, assessed: list[set[str]]) -> bool:
    """Does one clause of the assessment hold at least half the essential words of one of the
    code's wordings (`_wordings`: "Graves' disease", E05.0's, names E05.00) or of its title (a
    residual's too: "Hammer toe, left foot" names M20.42 "Other hammer toe(s) (acquired), left
    foot"), one of them a word that names the condition (`_condition_words`: no qualifier, no
    word of its chapter's title), and its pain where it is one ("Acute lumbar muscle strain" does
    not name M54.9's "Back pain NOS", nor "De Quervain tenosynovitis, right wrist" M25.531 "Pain
    in right wrist")? A title of its chapter's words alone is named by all of them, and one such
    word names nothing: "respiratory syncytial virus" is no J98.8 "Other specified respiratory
    disorders"; "Specified diseases of blood and blood-forming organs" is D75.89."""
    code = cs.normalize(code)
    condition = _condition_words(cs, code)

    def names(wanted: frozenset[str], words: set[str]) -> bool:
        if not condition:  # a title of its chapter's words alone: all of them, two at least
            return len(wanted) >= 2 and wanted <= words
        held = wanted & words  # half the words, one of them naming the condition
        return 2 * len(held) >= len(wanted) and bool(held & condition) and _PAIN & wanted <= held

    return any(wanted and any(names(wanted, words) for words in assessed) for wanted in _naming_words(cs, code))


@lru_cache(maxsize=65536)
def _naming_words(cs: CodeSet, code: str) -> tuple[frozenset[str], ...]:
    """The essential words of each wording of a code (`_wordings`) and of its title, a
    residual's too: what an assessment may name it by."""
    return (*(wanted for _, wanted in _wordings(cs, code)), essential_stems(cs.description(code)))


def _chapter_kind(cs: CodeSet, code: str) -> str:
    """"symptom" (chapter 18), "factor" (chapter 21, Z codes), else "diagnosis", by title."""
    chapter = _chapter(cs, code)
    title = cs.description(chapter).lower() if chapter else ""
    if title.startswith("symptoms, signs"):
        return "symptom"
    if title.startswith("factors influencing"):
        return "factor"
    return "diagnosis"


# --- less specific --------------------------------------------------------------------------
def _more_specific(cs: CodeSet, other: str, code: str) -> bool:
    """Does `other` report `code`'s condition with more detail? `code` must say it is generic,
    `other` sit below `code`'s parent and either not say so or sit deeper; or `code` be an
    "unspecified" code of another category that `other` reports (`_reports_generic`)."""
    if not _GENERIC.search(cs.description(code)):
        return False
    parent = next(iter(cs.ancestors(code)), None)
    if parent is None or code in cs.ancestors(other) + [other] or _RESIDUAL.search(cs.description(other)):
        return False  # "Other hyperlipidemia" says no more than E78.5, unless stated (specific_in_assessment)
    if _denies_what_it_says(cs, other, code):
        return False  # R11.0 "Nausea without vomiting" is R11.2's alternative, not its detail
    if parent not in cs.ancestors(other):
        return _reports_generic(cs, cs.normalize(other), cs.normalize(code)) \
            or _names_unspecified(cs, cs.normalize(other), cs.normalize(code))
    return (not _GENERIC.search(cs.description(other))
            or len(code_key(other)) > len(code_key(code)))


@lru_cache(maxsize=65536)
def _denies_what_it_says(cs: CodeSet, other: str, code: str) -> bool:
    """Does a wording of `other` say absent a word `code`'s description asks for (R11.0's
    "Nausea without vomiting" and R11.2 "Nausea with vomiting, unspecified")? Not a word it
    also says ("Retinal detachment without retinal break" says the retina)."""
    wanted = essential_stems(cs.description(code)) - negated_stems(cs.description(code))
    return any(only_negated_stems(w) & wanted for w, _ in _wordings(cs, cs.normalize(other)))


@lru_cache(maxsize=65536)
def _reports_generic(cs: CodeSet, other: str, code: str) -> bool:
    """Is `code` an "unspecified" code of another category of `other`'s chapter, whose words
    `other` holds with more, in its description and the titles above it below the chapter?
    T14.90XA "Injury, unspecified" beside S93.491A "Sprain of other ligament of right ankle"
    (block "Injuries to the ankle and foot"); C80.1 "Malignant (primary) neoplasm, unspecified"
    beside C61 "Malignant neoplasm of prostate". Not where `other` asks for it: I11.0
    "Hypertensive heart disease with heart failure" asks for the heart failure's code (I50.-).
    Nor where `other` is the cause "of diseases classified elsewhere" (B95.61, a staphylococcus):
    it names an organism, not the disease (B99.9 "Unspecified infectious disease")."""
    base = cs.ancestors(code)[0] if cs.seventh_variants(code) else code  # T14.90, not its encounter
    if not _UNSPECIFIED.search(cs.description(base)) or _ELSEWHERE.search(cs.description(other)) \
            or _chapter(cs, code) != _chapter(cs, other) \
            or _category(cs, code) == _category(cs, other):
        return False
    # What "unspecified" qualifies is not asked for: "Other injury of unspecified body region"
    # wants an injury.
    wanted = _title_stems(_UNSPECIFIED_PART.sub("", cs.description(base)))
    titles = [other, *cs.ancestors(other, include_groups=True)][:-1]  # not the chapter
    held = set().union(*(_title_stems(cs.description(t)) for t in titles))
    return (bool(wanted) and wanted <= held and len(_title_stems(cs.description(other))) > len(wanted)
            and not _asks_for(cs, other, code))


@lru_cache(maxsize=65536)
def _names_unspecified(cs: CodeSet, other: str, code: str) -> bool:
    """Is `code` an "unspecified" code of `other`'s category, under another subcategory, whose
    words but "unspecified" `other`'s description holds with more? F17.200 "Nicotine dependence,
    unspecified, uncomplicated" beside F17.210 "Nicotine dependence, cigarettes, uncomplicated";
    J45.909 "Unspecified asthma, uncomplicated" beside J45.20 "Mild intermittent asthma,
    uncomplicated"."""
    if not _UNSPECIFIED.search(cs.description(code)) or _RESIDUAL.search(cs.description(other)) \
            or _category(cs, code) != _category(cs, other):
        return False
    wanted = _title_stems(_UNSPECIFIED.sub(" ", cs.description(code)))
    held = _title_stems(cs.description(other))
    return bool(wanted) and wanted < held


def _title_stems(text: str) -> frozenset[str]:
    """The key words of a description or title without its nonessential words and code range,
    plurals also as their singular ("Injuries" says "injury")."""
    words = content_words(NONESSENTIAL.sub(" ", _RANGE.sub("", text)))
    return frozenset(key_words(" ".join(words + [s for w in words for s in singulars(w)])))


# --- integral symptoms ----------------------------------------------------------------------
def _groups(cs: CodeSet, code: str) -> list[str]:
    """The blocks above a code, nearest first, then its chapter."""
    plain = set(cs.ancestors(code))
    return [a for a in cs.ancestors(code, include_groups=True) if a not in plain]


@lru_cache(maxsize=65536)
def _category(cs: CodeSet, code: str) -> str:
    """The three-character category a code is under (itself for a category)."""
    return (cs.ancestors(code) or [code])[-1]


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


_PAIN_IN = re.compile(r"^pain in (.+)$", re.I)


@lru_cache(maxsize=65536)
def _pain_site(cs: CodeSet, code: str) -> frozenset[str]:
    """The site of a "Pain in <site>" code outside chapter 18 (M25.562 "Pain in left knee":
    knee), as word stems without the side; none for any other code."""
    m = _PAIN_IN.match(cs.description(code))
    if not m or _chapter_kind(cs, code) == "symptom":
        return frozenset()
    return stems(_SIDE.sub(" ", _UNSPECIFIED.sub(" ", m.group(1))))


def _pain_at_site_of(cs: CodeSet, pain: str, diagnosis: str) -> bool:
    """Is `pain` a "Pain in <site>" code and `diagnosis` a condition of that site and side (M17.12
    "Unilateral primary osteoarthritis, left knee")? The pain is then routinely part of it. Not a
    code of the pain's own category: M25 holds pain beside other findings of a joint (M25.451
    "Effusion, right hip"), which no more explain the pain than it explains them."""
    site = _pain_site(cs, cs.normalize(pain))
    if not site or _pain_site(cs, cs.normalize(diagnosis)) or _chapter_kind(cs, diagnosis) != "diagnosis" \
            or code_key(cs.normalize(pain))[:3] == code_key(cs.normalize(diagnosis))[:3]:
        return False
    words = stems(cs.description(diagnosis))
    sides, other = _own_sides(cs, cs.normalize(pain)), _own_sides(cs, cs.normalize(diagnosis))
    return site <= words and (not sides or not other or bool(sides & other))


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


def _excluded_by(cs: CodeSet, code: str, stated: str) -> bool:
    """Does an Excludes1 note forbid `code` beside `stated`, in either direction? Not where
    `stated` asks for `code` in a "Use additional code" note."""
    return bool(cs.excludes1_conflict(code, stated) or cs.excludes1_conflict(stated, code)) \
        and not _asks_for(cs, stated, code)


def _says_less(cs: CodeSet, code: str, other: str) -> bool:
    """Does `other`'s description say all that `code`'s does, and more? E61.1 "Iron deficiency"
    and D50.9 "Iron deficiency anemia, unspecified": "Iron deficiency anemia" states both."""
    return essential_stems(cs.description(cs.normalize(code))) < essential_stems(cs.description(cs.normalize(other)))


def _excludes(cs: CodeSet, symptom: str, diagnosis: str) -> bool:
    """Does an Excludes1 note on the symptom (or an ancestor) name the diagnosis ("R73
    hyperglycemia" excludes "diabetes mellitus (E08-E13)")? Not one on the diagnosis: that a
    diagnosis excludes a symptom says nothing about the symptom being part of it."""
    if _chapter_kind(cs, diagnosis) != "diagnosis":
        return False
    hit = cs.excludes1_conflict(symptom, diagnosis)
    return hit is not None and hit.source in (cs.normalize(symptom), *cs.ancestors(symptom, include_groups=True))


def _asks_for(cs: CodeSet, diagnosis: str, symptom: str, category: bool = False) -> bool:
    """Does a "Use additional code" or "Code also" note on the diagnosis (or an ancestor) name the
    symptom's code (`category`: a code of its category: E11.22's "N18.1-N18.6" for N18.9)?"""
    key = code_key(cs.normalize(symptom))
    for link in [cs.normalize(diagnosis), *cs.ancestors(diagnosis)]:
        try:
            record = cs.record(link)
        except UnknownCode:
            continue
        for note in record.use_additional_code + record.code_also:
            if any(lo <= key <= hi or category and lo[:3] <= key[:3] <= hi[:3] for lo, hi in note_ranges(note)):
                return True
    return False


# --- combination codes ----------------------------------------------------------------------
class _Combination(NamedTuple):
    category: str  # I12
    needs: tuple[tuple[tuple[str, str], ...], ...]  # each: key ranges one selected code falls in
    cause: str  # the condition the note must also hold, by name: "hypertension"
    parts: tuple[str, ...] = ()  # the categories it reports together: I13 -> I11, I12


def _combine(cs: CodeSet, prob: dict[str, float], outranked: dict[str, list[str]],
             established: frozenset[str] = frozenset(),
             together: Callable[[str, str], bool] = lambda a, b: True,
             ) -> tuple[dict[str, tuple[float, list[str]]], set[str]]:
    """Combination codes for the selected codes: {added code: (probability, the codes it
    combines)} and the selected codes those report (dropped). A selected code that a less sure
    selected combination would report goes into `outranked`, unless the assessment establishes
    the combination ("Hypertensive heart disease": I10 goes beside I11.0) or the codes beside it
    ask for that combination (I10 beside I12.9 and N18.32: the rules would add I12.9)."""
    added: dict[str, tuple[float, list[str]]] = {}
    replaced: set[str] = set()
    covered: set[str] = set()
    # A code a more specific selected code leaves out chooses no child (N18.9 beside N18.6).
    specific = [c for c in prob if not any(o != c and _more_specific(cs, o, c) for o in prob)]
    for comb in _combinations(cs):  # most needs first: I13 before I11 and I12
        causes = [c for c in prob if _names(cs, c, comb.cause)]
        present = [c for c in prob if comb.category in cs.ancestors(c)]
        # I11.9 beside I13.0: the code of the pair reports what a code of either part would
        reported = causes + [c for c in prob if any(part in cs.ancestors(c) for part in comb.parts)]
        parts = [[c for c in specific if _within(c, need)] for need in comb.needs]
        targets = [c for part in parts for c in part]
        # The child the codes beside it ask for (N18.6: I12.0).
        code = _best_asking(cs, cs.billable_descendants(comb.category), targets) if causes and all(parts) else None
        if present and code is not None and code not in present:
            replaced |= set(present)  # I12.9 "stage 1 through stage 4" beside N18.6: I12.0 is the one
            present = []
        if present:  # I12.9 already selected beside I10: it reports the hypertension
            for c in reported:  # unless the less sure of the two: then they contradict, but
                # where the codes beside ask for it (N18.32 with I10: I12.9), as if it were added
                if max(prob[p] for p in present) >= prob[c] or any(p in established for p in present) \
                        or code in present:
                    replaced.add(c)
                else:
                    outranked.setdefault(c, []).extend(present)
            continue
        if code is None or set(targets) <= covered:
            continue
        cause = max(causes, key=prob.get)
        p = min([prob[cause]] + [max(prob[c] for c in part) for part in parts])
        added[code] = (p, [cause] + sorted(set(targets), key=list(prob).index))
        # What the combination does not ask for as an additional code, it reports (I51.9 heart
        # disease beside I11.9; I50.22 stays beside I11.0, which asks for the heart failure).
        asked = _asked(cs, code)
        replaced |= set(reported) | {t for t in targets if not any(_within(t, line) for line in asked)}
        covered |= set(targets)
    for generic in [c for c in prob if c not in replaced and _WITHOUT_ANY.search(cs.description(c))]:
        category = _category(cs, generic)
        others = [c for c in prob if c != generic and category not in cs.ancestors(c) + [c]]
        by_targets: dict[tuple[str, ...], list[str]] = {}
        for option in _with_codes(cs, category):
            lines = _asked(cs, option)
            if all(any(_within(c, line) for c in others) for line in lines):
                targets = tuple(c for c in others if any(_within(c, line) for line in lines))
                by_targets.setdefault(targets, []).append(option)
        for targets, options in by_targets.items():
            if len(options) != 1:  # two would be a guess
                continue
            if options[0] not in prob:
                added[options[0]] = (min([prob[generic]] + [prob[c] for c in targets]),
                                     [generic, *targets])
            # I11.9 "without heart failure" beside I11.0 "with heart failure" and I50.22
            replaced.add(generic)
    for a, b in itertools.permutations(list(prob), 2):
        # Two codes the code set forbids together, where a code of one's category says both and
        # the note links them in one sentence ("CAD with stable angina"; a case report's
        # "diabetic woman" and the "hyperglycemia" of her admission are two findings).
        if a not in replaced and b not in replaced and cs.excludes1_conflict(a, b) and together(a, b):
            if (code := _says_both(cs, a, b)) is not None:
                added.setdefault(code, (min(prob[a], prob[b]), [a, b]))
                replaced |= {a, b}
    return added, replaced


def sentence_naming_both(cs: CodeSet, note: str, code: str, other: str) -> tuple[int, int] | None:
    """The first sentence that says both codes, every essential word of a wording of each
    (`_naming_words`), in its affirmed clauses: from its first such clause to its last."""
    spans = list(clauses(note))
    for start, end in sentences(note):
        inside = [(a, b) for a, b in spans if start <= a < end]
        words = set().union(*(key_words(note[a:b]) for a, b in inside))
        if all(any(wanted and wanted <= words for wanted in _naming_words(cs, cs.normalize(c)))
               for c in (code, other)):
            return inside[0][0], inside[-1][1]
    return None


def _says_both(cs: CodeSet, code: str, other: str) -> str | None:
    """The one billable code of `code`'s category whose title says, "with" the other, what the
    two titles say and nothing more: I20 excludes "angina pectoris with atherosclerotic heart
    disease", and I25.10 "Atherosclerotic heart disease of native coronary artery without angina
    pectoris" with I20.89 "Other forms of angina pectoris" is I25.118 "... with other forms of
    angina pectoris". (R07.89 "Other chest pain" says no more than R07.9 beside R52 "Pain".)"""
    mine, theirs = key_words(cs.description(code)), key_words(cs.description(other))
    options = [c for c in cs.billable_descendants(_category(cs, code)) if c != code
               and _WITH.search(cs.description(c))
               and theirs <= (said := key_words(cs.description(c))) <= mine | theirs
               and (mine < said or mine == said and "without" in cs.description(code).split())]
    return options[0] if len(options) == 1 else None


@lru_cache(maxsize=8)
def _combinations(cs: CodeSet) -> list[_Combination]:
    """The categories whose Includes notes say they report one condition due to (or with)
    another, most needs first."""
    due: dict[str, _Combination] = {}
    pairs: list[tuple[str, str, str]] = []
    for code, note in cs.notes_of("includes", "category"):
        if m := _DUE_TO.match(note.strip()):
            ranges = _bare_ranges(m.group(1))
            if ranges:
                due[code] = _Combination(code, (ranges,), _PARENS.sub("", m.group(2)).strip(" .").lower())
        elif m := _WITH_ANY.match(note.strip()):
            pairs.append((code, m.group(1).rstrip(".-"), m.group(2).rstrip(".-")))
    both = [_Combination(code, due[a].needs + due[b].needs, due[a].cause, (a, b))
            for code, a, b in pairs if a in due and b in due and due[a].cause == due[b].cause]
    return both + list(due.values())


def _bare_ranges(text: str) -> tuple[tuple[str, str], ...]:
    """"I50.- or I51.4-I51.7, I51.89" -> key ranges, as in a note's parentheses."""
    return tuple(note_ranges("(" + re.sub(r"\s+(?:and|or)\s+", ", ", text) + ")"))


def _within(code: str, ranges) -> bool:
    key = code_key(code)
    return any(lo <= key <= hi for lo, hi in ranges)


def _names(cs: CodeSet, code: str, condition: str) -> bool:
    """Is `code` the plain code of `condition`: its description or an Includes term, without
    the parenthesized nonessential words, is exactly that name ("hypertension (arterial)
    (benign) ..." on I10)?"""
    record = cs.record(cs.normalize(code))
    return any(_PARENS.sub("", term).strip(" .").lower() == condition
               for term in [record.description, *record.includes])


@lru_cache(maxsize=65536)
def _asked_lines(cs: CodeSet, code: str) -> tuple[tuple[tuple[str, str], ...], ...]:
    """What a code's "Use additional code" notes ask for: one range list per line."""
    record = cs.record(code)
    lines = [line for note in record.use_additional_code for line in note.splitlines()]
    return tuple(r for r in (tuple(note_ranges(line)) for line in lines) if r)


def _asked(cs: CodeSet, code: str) -> list[tuple[tuple[str, str], ...]]:
    return list(_asked_lines(cs, cs.normalize(code)))


@lru_cache(maxsize=4096)
def _with_codes(cs: CodeSet, category: str) -> tuple[str, ...]:
    """The billable "with ..." codes of a category that ask for an additional code."""
    return tuple(d for d in cs.billable_descendants(category)
                 if _WITH.search(cs.description(d)) and _asked(cs, d))


def _best_asking(cs: CodeSet, options: list[str], selected: list[str]) -> str | None:
    """Of `options`, the code whose every "Use additional code" line a selected code answers,
    covering the most selected codes; None when none does, or two tie."""
    scored = []
    for code in options:
        lines = _asked(cs, code)
        if all(any(_within(c, line) for c in selected) for line in lines):
            scored.append((sum(any(_within(c, line) for line in lines) for c in selected), code))
    scored.sort(reverse=True)
    if not scored or (len(scored) > 1 and scored[0][0] == scored[1][0]):
        return None
    return scored[0][1]


# --- long-term drug therapy -----------------------------------------------------------------
_PARENTHESIZED_CODE = re.compile(r"\(([A-Z]\d\d(?:\.\w+)?)\)")


def drug_therapy(cs: CodeSet, note: str, codes: list[str]) -> dict[str, tuple[tuple[int, int], list[str]]]:
    """The drug therapy codes the `codes` ask for in their "Use additional code" notes whose drug
    class the note names as current: {code: (where the note names the drug, the codes asking)}.
    None that is among `codes` already."""
    return _found_asked(cs, codes, partial(_asked_drug_codes, cs), partial(current_drug, note))


def _found_asked(cs: CodeSet, codes: list[str], asked_of: Callable[[str], tuple],
                 find: Callable[[object], tuple[int, int] | None]) -> dict[str, tuple[tuple[int, int], list[str]]]:
    """{code asked for: (where `find` finds it in the note, the codes asking)} for the (asked
    code, what to look for) pairs `asked_of` gives for each of `codes`; none among `codes`."""
    out: dict[str, tuple[tuple[int, int], list[str]]] = {}
    for code in codes:
        if not cs.is_valid(code):
            continue
        for asked, what in asked_of(cs.normalize(code)):
            if asked in codes:
                continue
            if asked in out:
                out[asked][1].append(code)
            elif (span := find(what)) is not None:
                out[asked] = (span, [code])
    return out


def body_mass_index(cs: CodeSet, note: str, codes: list[str]) -> dict[str, tuple[tuple[int, int], list[str]]]:
    """The BMI code that the `codes` ask for in their "Use additional code" notes (E66 obesity:
    "code to identify body mass index (BMI), if known"), where the note records an adult's BMI
    (`bmi.recorded_bmi`): {code: (where the note writes it, the codes asking)}. None that is
    among `codes` already."""
    asking = [c for c in codes if cs.is_valid(c) and _asks_for_bmi(cs, cs.normalize(c))]
    found = recorded_bmi(note) if asking else None
    code = adult_bmi_code(cs, found[0]) if found else None
    return {} if code is None or code in codes else {code: (found[1], asking)}


def status_asked(cs: CodeSet, note: str, codes: list[str]) -> dict[str, tuple[tuple[int, int], list[str]]]:
    """The status codes the `codes` ask for in their "Use additional code" notes ("dialysis status
    (Z99.2)" on N18.6) where an affirmed clause before the plan says the status in the words of
    one of the asked code's "... status" terms ("on hemodialysis" for "Hemodialysis status", "s/p
    kidney transplant" for Z94.0 "Kidney transplant status"): {code: (where, the codes asking)}.
    Not a status the note plans ("start hemodialysis next month"); none among `codes` already."""
    span = assessment_span(note)
    plan = span[1] if span else len(note)

    def said(wanted: tuple[frozenset[str], ...]) -> tuple[int, int] | None:
        return next(((start, end) for start, end in clauses(note)
                     if start < plan and any(w <= key_words(note[start:end]) for w in wanted)
                     and not _PLANNED.search(note, *_sentence_around(note, start))), None)

    return _found_asked(cs, codes, partial(_asked_status_codes, cs), said)


def detail_asked(cs: CodeSet, note: str, codes: list[str]) -> dict[str, tuple[tuple[int, int], list[str]]]:
    """The code that a "Use additional code" note of the `codes` asks for by a range, where one
    affirmed sentence of the assessment says every word that sets it apart from the rest of the
    range: E11.621 "Type 2 diabetes mellitus with foot ulcer" asks "to identify site of ulcer
    (L97.4-, L97.5-)", and "Diabetic foot ulcer of the right heel with fat layer exposed" says
    L97.412's "right heel ... with fat layer exposed" beyond the range's "Non-pressure chronic
    ulcer of": {code: (that sentence, the codes asking)}. The one saying most words; none where
    two say as many, nor where a code of the range is among `codes` already."""
    affirmed = _assessment_sentences(cs, note)
    span = assessment_span(note)
    assessed = [s for s in affirmed if span and s.text in note[span[0]:span[1]]]
    out: dict[str, tuple[tuple[int, int], list[str]]] = {}
    for code in (c for c in codes if assessed and cs.is_valid(c)):
        for ranges in _asked_ranges(cs, cs.normalize(code)):
            if any(_within(c, ranges) for c in codes if cs.is_valid(c)):
                continue
            # The sentence names what the range codes too ("ulcer"), not only a site: "right
            # ankle and foot" alone is no M89.771 "Major osseous defect, right ankle and foot".
            condition = _range_condition(cs, ranges)
            best = []  # (words said, not an "other part"), the code, the sentence
            for asked, parts in _range_details(cs, ranges):
                said = [(len(wanted), s) for wording, wanted in parts for s in assessed
                        if condition & s.words and _states(wording, wanted, s)]
                if said:
                    count, sentence = max(said, key=lambda x: x[0])
                    # "Ulcer of the right heel" is L97.41-, not L97.51- "other part of right foot"
                    best.append(((count, not _OTHER_WORD.search(cs.description(asked))), asked, sentence))
            best.sort(key=lambda b: b[0], reverse=True)
            if best and (len(best) == 1 or best[0][0] > best[1][0]):
                _, asked, sentence = best[0]
                where = note.find(sentence.text.strip())
                entry = out.setdefault(asked, ((where, where + len(sentence.text.strip())), []))
                entry[1].append(code)
    return out


@lru_cache(maxsize=65536)
def _asked_ranges(cs: CodeSet, code: str) -> tuple[tuple[tuple[str, str], ...], ...]:
    """The key ranges of each "Use additional code" line of `code` and its ancestors that asks
    for a range of codes, not one code ("site of ulcer (L97.4-, L97.5-)")."""
    out = (tuple(note_ranges(line)) for line in _use_additional_lines(cs, code))
    return tuple(dict.fromkeys(ranges for ranges in out if len(_billable_in(cs, ranges)) > 1))


@lru_cache(maxsize=4096)
def _billable_in(cs: CodeSet, ranges: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """The billable codes whose keys fall in the ranges, in the code set's key order."""
    keys, codes = _billable_keys(cs)
    return tuple(c for lo, hi in ranges for c in codes[bisect_left(keys, lo):bisect_right(keys, hi)])


@lru_cache(maxsize=4)
def _billable_keys(cs: CodeSet) -> tuple[list[str], list[str]]:
    """Every billable code's key, sorted, and the codes in that order: a range is two bisections."""
    pairs = sorted((code_key(c), c) for c in cs.all_codes())
    return [k for k, _ in pairs], [c for _, c in pairs]


@lru_cache(maxsize=4096)
def _range_details(cs: CodeSet, ranges: tuple[tuple[str, str], ...]) -> tuple[tuple[str, tuple], ...]:
    """(code, its wordings as (wording, the stems that set it apart)) for each billable code of
    the range: the stems of its title (each "X and Y" alternative) that not every code of the
    range holds."""
    titles = {c: [plain_wording(w) for w in [cs.description(c), *and_alternatives(cs.description(c))]]
              for c in _billable_in(cs, ranges)}
    shared = _range_shared(cs, ranges)
    return tuple((c, tuple((w, apart) for w in wordings if (apart := stated_stems(w) - shared)))
                 for c, wordings in titles.items())


@lru_cache(maxsize=4096)
def _range_shared(cs: CodeSet, ranges: tuple[tuple[str, str], ...]) -> frozenset[str]:
    """The stems every title of the range's billable codes holds ("non-pressure chronic ulcer")."""
    return frozenset.intersection(*(stated_stems(plain_wording(cs.description(c))) for c in _billable_in(cs, ranges)))


def _range_condition(cs: CodeSet, ranges: tuple[tuple[str, str], ...]) -> frozenset[str]:
    """Those of them that name the condition, not how it runs ("ulcer", not "chronic")."""
    return _range_shared(cs, ranges) - _QUALIFYING


_PLANNED = re.compile(r"\b(?:start\w*|will|plan\w*|consider\w*|discuss\w*|candidate|refer\w*|evaluat\w*|"
                      r"needs?|may|if|prepar\w*|future|eventual\w*)\b", re.I)


def _sentence_around(note: str, at: int) -> tuple[int, int]:
    return next(((a, b) for a, b in sentences(note) if a <= at < b), (at, at))


@lru_cache(maxsize=65536)
def _asked_status_codes(cs: CodeSet, code: str) -> tuple[tuple[str, tuple[frozenset[str], ...]], ...]:
    """(billable code, the key words of each of its "... status" terms less "status") for each
    line of the "Use additional code" notes of `code` and its ancestors that asks for a status."""
    out = []
    for line, asked in _asking_lines(cs, code):
        terms = [t for t in (cs.description(asked), *cs.inclusion_terms(asked)) if _STATUS_WORD.search(t)]
        wanted = tuple(w for t in terms if (w := frozenset(stated_stems(t) - {stem("status")})))
        if _STATUS_WORD.search(line) and wanted:
            out.append((asked, wanted))
    return tuple(dict.fromkeys(out))


_STATUS_WORD = re.compile(r"\bstatus\b", re.I)


@lru_cache(maxsize=65536)
def _asks_for_bmi(cs: CodeSet, code: str) -> bool:
    return any("body mass index" in note.lower()
               for link in [code, *cs.ancestors(code)] for note in cs.record(link).use_additional_code)


def long_term_therapy(cs: CodeSet, note: str, codes: list[str]) -> dict[str, tuple[int, int]]:
    """The long-term drug therapy codes of the classes a coder codes wherever the note says the
    patient takes them long term (`drugs.CODED_WHEN_STATED`: "Continue apixaban long term" is
    Z79.01, "Long-term aspirin and clopidogrel" Z79.82 and Z79.02): {code: where the note names
    the drug}. None that is among `codes` already."""
    out = {}
    for class_name in CODED_WHEN_STATED:
        code = _class_code(cs, class_name)
        if code is not None and code not in codes and (span := long_term_drug(note, class_name)):
            out[code] = span
    return out


@lru_cache(maxsize=16)
def _class_code(cs: CodeSet, class_name: str) -> str | None:
    """The billable Z79 code of a drug class, by the class's name in its title ("Long term
    (current) use of aspirin")."""
    wording = next(w for name, w, _ in DRUG_CLASSES if name == class_name)
    return next((c for c in cs.billable_descendants("Z79") if re.search(wording, cs.description(c), re.I)), None)


def _use_additional_lines(cs: CodeSet, code: str):
    """Each line of the "Use additional code" notes of `code` and its ancestors."""
    for link in [code, *cs.ancestors(code)]:
        for note in cs.record(link).use_additional_code:
            yield from note.splitlines()


def _asking_lines(cs: CodeSet, code: str):
    """(line, the billable code it names) for each line of the "Use additional code" notes of
    `code` and its ancestors that names one in parentheses ("insulin (Z79.4)" on E11)."""
    for line in _use_additional_lines(cs, code):
        asked = _PARENTHESIZED_CODE.search(line)
        if asked and cs.is_billable(asked.group(1)):
            yield line, cs.normalize(asked.group(1))


@lru_cache(maxsize=65536)
def _asked_drug_codes(cs: CodeSet, code: str) -> tuple[tuple[str, str], ...]:
    """(billable code, drug class) for each line of the "Use additional code" notes of `code` and
    its ancestors that asks for a drug class by name ("insulin (Z79.4)" on E11)."""
    return tuple(dict.fromkeys((asked, drugs) for line, asked in _asking_lines(cs, code)
                               if (drugs := drug_class(line))))


# "Family history of colon cancer", "Personal history of basal cell carcinoma": the words that
# say whose condition and that it is past, then the condition, to the end of its clause (what
# follows a comma says how it is now: "no recurrence").
_HISTORY_OF = re.compile(r"\b(family|personal)\s+(?:medical\s+)?history\s+of\s+([^:;(,]+)", re.I)
_HISTORY_KINDS = {"family": "family history of", "personal": "personal history of"}
_HISTORY_CATEGORIES = ("Z80", "Z81", "Z82", "Z83", "Z84", "Z85", "Z86", "Z87")


# A vaccine given at this visit ("Vaccines given today: DTaP, IPV", "Flu vaccine administered"),
# not one the patient had before, declined or is due for.
_GIVEN = re.compile(r"\b(?:given|administered|gave|administer)\b", re.I)
_NOT_GIVEN_NOW = re.compile(r"\b(?:not|no|declin\w*|refus\w*|defer\w*|previously|prior|last|ago|due|will|"
                            r"next|recommend\w*|offered|up to date|if)\b", re.I)


def immunization(cs: CodeSet, note: str, codes: list[str]) -> dict[str, tuple[int, int]]:
    """Z23 "Encounter for immunization" where a sentence of an encounter note says a vaccine was
    given at this visit: {"Z23": where it names the vaccine}; {} where none was, in a case report
    (its history's vaccines are no visit's) or where Z23 is among `codes`."""
    if "Z23" in codes or not cs.is_valid("Z23") or not encounter_note(note):
        return {}
    for start, end in sentences(note):
        vaccine = VACCINE.search(note, start, end)
        if vaccine and _GIVEN.search(note, start, end) and not _NOT_GIVEN_NOW.search(note, start, end):
            return {"Z23": vaccine.span()}
    return {}


# A routine examination, the visit's reason where the note's heading or history says so ("Well-child
# visit", "here for his annual check-up"); not an examination for a purpose (sports, school, work:
# Z02.-) nor one a plan only sets ("annual physical in a year" comes after the assessment).
_ROUTINE_EXAM = re.compile(
    r"\b(?:well[- ](?:child|baby|woman|man)(?: (?:visit|check\w*|exam\w*))?|(?:annual|yearly|routine|preventive|"
    r"periodic) (?:physical|exam\w*|check[- ]?up|wellness(?: visit)?|health (?:exam\w*|check\w*)|visit)|"
    r"(?:health maintenance|wellness) (?:visit|exam\w*))\b(?! (?:for|before) (?:school|sports?|camp|work|employment))",
    re.I)
_CAME_FOR = re.compile(
    r"\b(?:here|present\w*|comes?|came|seen|scheduled|visit)(?: today)? for (?:(?:his|her|their|an?|the) )?$", re.I)
_NEW_FINDING = re.compile(r"\b(?:new|newly|abnormal|incidental)\b", re.I)


def routine_examination(cs: CodeSet, note: str, codes: list[str]) -> dict[str, tuple[int, int]]:
    """The routine examination code of an encounter note whose heading or history says the
    visit is one: Z00.129 / Z00.121 for a child (29 days to 17 years), Z00.00 / Z00.01 for an
    adult, "with abnormal findings" where what else the visit is coded for (`codes`) holds a new
    finding: {code: where the note says so}. {} for a newborn's (Z00.11-), a case
    report, or where `codes` hold a Z00 code."""
    if not encounter_note(note) or any(code_key(c).startswith("Z00") for c in codes):
        return {}
    hit = _routine_visit(note)
    if hit is None:
        return {}
    days = patient_age_days(note)
    child = days < 18 * 365 if days is not None else bool(re.search(r"child|baby", hit.group(), re.I))
    if days is not None and days < 29:
        return {}
    # An abnormal finding is a new one: a sign, symptom or abnormal result (chapter 18) or a
    # condition the assessment calls new; a chronic condition reviewed at the visit is none.
    span = assessment_span(note)
    found = any(cs.is_valid(c) and _chapter_kind(cs, c) == "symptom" for c in codes) or bool(
        codes and span and _NEW_FINDING.search(note, *span))
    code = ("Z00.121" if found else "Z00.129") if child else ("Z00.01" if found else "Z00.00")
    return {code: hit.span()} if cs.is_valid(code) else {}


# A former smoker: ICD-10-CM codes tobacco use that has stopped as a history of nicotine
# dependence (Z87.891; index "History, personal, nicotine dependence"): "Former smoker, quit 15
# years ago", "quit smoking 10 years ago". Not the plan's "advised to quit smoking".
_FORMER_SMOKER = re.compile(
    r"\b(?:(?:former|ex-?|past|previous|prior|reformed)[- ](?:heavy |light |cigarette |pipe )?"
    r"(?:smoker|smoking|tobacco (?:user|use))|(?:quit|stopped|gave up) (?:smoking|cigarettes|tobacco))\b", re.I)
_WANTS_TO_QUIT = re.compile(
    r"\b(?:to|will|would|wants?|ready|try\w*|plans?|planning|help\w*|advis\w*|encourag\w*|counsel\w*|"
    r"interested|consider\w*|thinking|discussed)\b", re.I)
_SMOKES_NOW = re.compile(r"\b(?:smokes|current(?:ly)? smok\w*|still smok\w*|active smoker)\b", re.I)


def tobacco_history(cs: CodeSet, note: str, codes: list[str]) -> dict[str, tuple[int, int]]:
    """Z87.891 "Personal history of nicotine dependence" where an affirmed clause of an encounter
    note says the patient smoked and quit: {"Z87.891": those words}. {} in a case report, where
    `codes` hold a tobacco code (F17.2-, Z72.0, Z87.891), or where the note says the patient
    smokes now (then the coder codes the dependence)."""
    if (not encounter_note(note) or not cs.is_valid("Z87.891") or _SMOKES_NOW.search(note)
            or any(code_key(c).startswith(("F172", "Z720", "Z87891")) for c in codes)):
        return {}
    for a, b in clauses(note):
        for m in _FORMER_SMOKER.finditer(note, a, b):
            if not _WANTS_TO_QUIT.search(note, a, m.start()):
                return {"Z87.891": m.span()}
    return {}


# Cigarettes counted: "half a pack a day", "15 cigarettes a day", "1 ppd".
_CIGARETTES = re.compile(r"\b(?:cigarettes?|packs?|ppd)\b", re.I)


def current_smoking(cs: CodeSet, note: str, codes: list[str]) -> dict[str, tuple[int, int]]:
    """F17.210 "Nicotine dependence, cigarettes, uncomplicated" where an affirmed clause of an
    encounter note says the patient smokes now and its sentence counts cigarettes or packs
    ("Smokes half a pack a day"): the Alphabetic Index reads a smoker as nicotine dependence
    ("Smoker - see Dependence, drug, nicotine"), whether or not the assessment lists it.
    {"F17.210": from the words that say so to the clause's end}. {} in a case report, where
    `codes` hold a tobacco code (F17.2-, Z72.0), or for a relative ("Her father smokes")."""
    if not encounter_note(note) or not cs.is_valid("F17.210") \
            or any(code_key(c).startswith(("F172", "Z720")) for c in codes):
        return {}
    relatives = family_history_statements(note)
    for a, b in clauses(note):
        now = _SMOKES_NOW.search(note, a, b)
        if now and _CIGARETTES.search(note, *_sentence_around(note, a)) \
                and not any(x <= a < y for x, y in relatives):
            return {"F17.210": (now.start(), b)}
    return {}


# A pregnancy's weeks of gestation ("12 weeks 2 days", "28 wks", "32w1d"), not a time ago ("last
# period 12 weeks ago") nor a duration ("nausea for 3 weeks").
_PREGNANCY = re.compile(r"\b(?:pregnan\w*|gestation\w*|prenatal|antenatal|intrauterine|IUP|EGA|"
                        r"G\d{1,2}\s?P\d{1,2}\w*|gravida)\b", re.I)
_GESTATION_WEEKS = re.compile(
    r"(?<!for )(?<!past )(?<!last )\b(\d{1,2})(?:[- ]?(?:weeks?|wks?)|w(?=\s?\d\s?d\b))"
    r"(?:,? ?(?:and )?\d ?(?:days?|d)\b)?(?! ago)", re.I)
# A normal pregnancy's supervision (Z34): the assessment or heading says the pregnancy is normal or
# the visit routine prenatal care; a complication is coded from chapter 15 (O codes) instead.
_NORMAL_PREGNANCY = re.compile(
    r"\b(?:(?:normal|uncomplicated|low[- ]risk)(?: \w+)? (?:pregnancy|gestation)|routine prenatal|"
    r"prenatal (?:visit|care|check\w*))\b", re.I)
_FIRST_PREGNANCY = re.compile(r"\b(?:G1\s?P0\w*|G1|gravida 1|primigravid\w*|first pregnancy)\b", re.I)
_LATER_PREGNANCY = re.compile(r"\b(?:G(?:[2-9]|1\d)\s?P\d\w*|gravida [2-9])\b", re.I)


def prenatal_visit(cs: CodeSet, note: str, codes: list[str]) -> dict[str, tuple[int, int]]:
    """What a prenatal visit of a normal pregnancy is coded for: Z34.- "Encounter for supervision
    of normal (first / other) pregnancy" by trimester where the note calls the pregnancy normal
    or the visit prenatal care, and Z3A.- for the weeks of gestation it records: {code: where the
    note says so}. {} in a case report or where `codes` hold a Z3A code; no Z34 where they hold
    another pregnancy code (chapter 15's O codes, Z33, Z34): a complicated pregnancy is coded from
    its complication, with Z3A for its weeks (O24.410 and Z3A.28)."""
    if not encounter_note(note) or any(code_key(c).startswith("Z3A") for c in codes):
        return {}
    out = {}
    weeks, where = _weeks_pregnant(note)
    normal = _normal_pregnancy(note)
    if normal is not None and not any(code_key(c).startswith(("O", "Z33", "Z34")) for c in codes):
        first = _FIRST_PREGNANCY.search(note)
        which = ("normal first" if first else "other normal" if _LATER_PREGNANCY.search(note)
                 else "normal pregnancy, unspecified")
        when = ("unspecified trimester" if weeks is None else "first trimester" if weeks < 14
                else "second trimester" if weeks < 28 else "third trimester")
        supervision = [c for c in cs.billable_descendants("Z34")
                       if which in cs.description(c) and cs.description(c).endswith(when)]
        if len(supervision) == 1:
            out[supervision[0]] = normal.span()
    if weeks is not None and (z3a := _gestation_code(cs, weeks)):
        out[z3a] = where  # after the encounter's code: Z3A is never the first listed
    return out


def _normal_pregnancy(note: str) -> re.Match | None:
    """Where an affirmed clause calls the pregnancy normal or the visit prenatal care."""
    return next((m for a, b in clauses(note) for m in _NORMAL_PREGNANCY.finditer(note, a, b)), None)


def _weeks_pregnant(note: str) -> tuple[int | None, tuple[int, int]]:
    """The weeks of gestation the note records in a sentence about the pregnancy, the
    assessment's first: (weeks, where); (None, (0, 0)) where it records none."""
    start = assessment_start(note) or 0
    found = [(a < start, m) for a, b in sentences(note) if _PREGNANCY.search(note, a, b)
             for m in _GESTATION_WEEKS.finditer(note, a, b)]
    if not found:
        return None, (0, 0)
    _, m = min(found, key=lambda x: (x[0], x[1].start()))
    return int(m.group(1)), m.span()


def _gestation_code(cs: CodeSet, weeks: int) -> str | None:
    """Z3A's code for `weeks` of gestation, by its title ("12 weeks gestation of pregnancy",
    "Less than 8 weeks ...", "Greater than 42 weeks ...")."""
    for code in cs.billable_descendants("Z3A") if cs.is_valid("Z3A") else []:
        title = cs.description(code)
        if m := re.match(r"(Less than |Greater than )?(\d+) weeks", title):
            n = int(m.group(2))
            if (n == weeks and not m.group(1) or m.group(1) == "Less than " and weeks < n
                    or m.group(1) == "Greater than " and weeks > n):
                return code
    return None


def _routine_visit(note: str) -> re.Match | None:
    """Where the note says this visit is a routine examination: its heading (first line), or the
    history saying it is what the patient came for ("here for his annual check-up"; not "labs
    from her annual visit")."""
    start = assessment_start(note)
    first_line = note.lstrip().split("\n", 1)[0]
    offset = note.index(first_line)
    for a, b in clauses(note):
        if start is not None and a >= start:
            break
        for m in _ROUTINE_EXAM.finditer(note, a, b):
            if m.start() < offset + len(first_line) or _CAME_FOR.search(note, a, m.start()):
                return m
    return None



def history_of(cs: CodeSet, note: str, codes: list[str]) -> dict[str, tuple[int, int]]:
    """The "Family history of" (Z80-Z84) and "Personal history of" (Z85-Z87) codes that the
    assessment states through the condition it names: the code whose "Conditions classifiable
    to ..." range holds that condition's code ("Family history of colon cancer": C18.9 is in
    Z80.0's C15-C26, Z80.0 "... malignant neoplasm of digestive organs"; "Personal history of
    basal cell carcinoma": C44.91, Z85.828). {code: the words of the note}. None that is among
    `codes`, or of whose category one is (the note states it in the code set's words)."""
    start = assessment_start(note)
    if start is None:
        return {}
    taken = {c[:3] for c in codes}
    affirmed = list(clauses(note))
    out = {}
    for a, b in sentences(note):
        if b <= start:
            continue
        for m in _HISTORY_OF.finditer(note, a, b):
            if not any(x <= m.start(2) < y for x, y in affirmed):  # "No family history of ..."
                continue
            code = _history_code(cs, m.group(1).lower(), m.group(2))
            if code is not None and code[:3] not in taken:
                out[code] = (m.start(), m.start(2) + len(m.group(2).rstrip(" .")))
    return out


def in_personal_history(cs: CodeSet, codes: list[str]) -> list[Rejected]:
    """The malignant neoplasm codes among `codes` that a personal history code among them reports
    by its own range: "Personal history of basal cell carcinoma" (Z85.828, C44) beside C44.311
    for the "history of basal cell carcinoma of the nose, excised in 2019" of the HPI. A
    malignancy excised with no treatment and no evidence left is coded from Z85 (guideline
    I.C.2.d), not as current."""
    ranges = [r for c in codes if c.startswith("Z85") and cs.is_valid(c) for r in _classifiable(cs, cs.normalize(c))]
    return [Rejected(c, IN_PERSONAL_HISTORY) for c in codes
            if c.startswith("C") and cs.is_valid(c) and _within(cs.normalize(c), ranges)]


def _history_code(cs: CodeSet, kind: str, condition: str) -> str | None:
    """The billable history code of `kind` for `condition`: of those whose range holds one of the
    five codes the code-set search finds first for it (conditions, not signs or Z codes), the
    one whose title says most of its words, then most of the first code's, then the one most of
    the five fall in, then a residual "other"; none whose title says none of its words
    ("Family history of epilepsy and other diseases of the nervous system" for "sudden cardiac
    death"). Where none does, the code the search finds for the whole statement by its title
    (`_history_titled`), else the one most of the five fall in: "hypertension" finds I15.0,
    I16.0 ..., all circulatory, so Z82.49 "... other diseases of the circulatory system";
    "alcoholism" finds F10 codes, all Z81.1's "alcohol abuse and dependence"."""
    found = [h.code for h in cs.search(condition, limit=12, billable_only=True) if is_diagnosis(cs, h.code)][:5]
    words = key_words(condition)
    first = key_words(cs.description(found[0])) if found else set()  # "ovarian": "... ovary"
    votes: dict[str, int] = {}
    for code in found:
        for history in _history_codes(cs, kind):
            if _within(code, history[1]):
                votes[history[0]] = votes.get(history[0], 0) + 1
    scored = [(len((title := key_words(_title_rest(cs, h))) & words), len(title & first), n,
               "other" in cs.description(h).lower(), h) for h, n in votes.items()]
    best = max(scored, default=None, key=lambda s: s[:4])
    if best and best[0]:
        return best[4]
    named = _history_titled(cs, kind, condition)
    if named:
        return named
    return best[4] if best and 2 * best[2] > len(found) else None


def _history_titled(cs: CodeSet, kind: str, condition: str) -> str | None:
    """The history code of `kind` that the code-set search finds for the whole statement and
    whose title says two or more of the condition's words, the fewest others, and "unspecified"
    before "other": "Personal history of colon polyps" is Z86.0100 "... colon polyps,
    unspecified", a code with no range of its own."""
    words = key_words(condition)
    prefix = _HISTORY_KINDS[kind]
    scored = []
    for hit in cs.search(f"{prefix} {condition}", limit=8, billable_only=True):
        if hit.code[:3] in _HISTORY_CATEGORIES and cs.description(hit.code).lower().startswith(prefix):
            title = key_words(_title_rest(cs, hit.code))
            if len(title & words) >= 2:
                scored.append((len(title & words), -len(title - words),
                               bool(_UNSPECIFIED.search(cs.description(hit.code))), hit.code))
    return max(scored)[3] if scored else None


def _title_rest(cs: CodeSet, code: str) -> str:
    """A history code's title without its "Family history of": the condition it reports."""
    title = cs.description(code)
    return title[title.lower().find(" of ") + 4:]


@lru_cache(maxsize=4)
def _history_codes(cs: CodeSet, kind: str) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """(code, ranges) of each billable history code of `kind` ("family", "personal") whose
    "Conditions classifiable to ..." inclusion terms name ranges: its own, else its nearest
    ancestor's where no sibling has its own (Z85.828 holds C44 itself; Z80.42 takes Z80.4's
    C51-C63, but Z85.830 not Z85.8's range of all "other" sites, which its siblings split)."""
    out = []
    for code in (c for category in _HISTORY_CATEGORIES for c in cs.billable_descendants(category)):
        if not cs.description(code).lower().startswith(_HISTORY_KINDS[kind]):
            continue
        ranges = _classifiable(cs, code)
        parent = cs.parent(code)
        if not ranges and parent and not any(_classifiable(cs, c) for c in cs.children(parent)):
            # Z80.4's C51-C63 for Z80.41 ... Z80.49 alike, Z86.7's I00-I99 for Z86.711
            ranges = next((r for link in cs.ancestors(code) if (r := _classifiable(cs, link))), ())
        if ranges:
            out.append((code, ranges))
    return tuple(out)


def _classifiable(cs: CodeSet, code: str) -> tuple[tuple[str, str], ...]:
    """The ranges of a code's own "Conditions classifiable to ..." inclusion terms."""
    terms = [t for t in cs.inclusion_terms(code) if t.lower().startswith(_CLASSIFIABLE)]
    return tuple(r for t in terms for r in _bare_ranges(t[len(_CLASSIFIABLE):].replace(";", ",")))


_CLASSIFIABLE = "conditions classifiable to "
