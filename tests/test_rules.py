"""Coding rules after selection, against the real FY2026 code set."""
import pytest

from models import rules
from models.contract import Rejected
from models.pipeline import Pipeline
from models.select import open_selector


def run(cs, *codes):
    kept, dropped, _ = rules.apply([(c, 0.5) for c in codes], cs)
    return [c for c, _ in kept], {r.raw: r.reason for r in dropped}


@pytest.mark.parametrize("generic, specific", [
    ("E11.9", "E11.22"),    # without complications / with diabetic CKD
    ("I50.9", "I50.22"),    # heart failure, unspecified / chronic systolic
    ("E78.5", "E78.00"),    # hyperlipidemia, unspecified / pure hypercholesterolemia, unspecified
    ("F10.10", "F10.120"),  # alcohol abuse, uncomplicated / with intoxication, uncomplicated
])
def test_a_generic_code_beside_a_more_specific_one_is_dropped(cs, generic, specific):
    assert run(cs, generic, specific) == ([specific], {generic: rules.LESS_SPECIFIC})
    assert run(cs, specific, generic) == ([specific], {generic: rules.LESS_SPECIFIC})
    assert run(cs, generic) == ([generic], {})


def test_generic_codes_stay_beside_other_conditions_or_equally_generic_ones(cs):
    assert run(cs, "E11.9", "I10") == (["E11.9", "I10"], {})
    assert run(cs, "E11.9", "E10.22") == (["E11.9", "E10.22"], {})  # another category
    assert run(cs, "E87.20", "E87.1") == (["E87.20", "E87.1"], {})  # same category, not parent
    assert run(cs, "E11.8", "E11.9") == (["E11.8", "E11.9"], {})  # neither says more


@pytest.mark.parametrize("symptom, diagnosis", [
    ("R05.9", "J18.9"),    # cough / pneumonia
    ("R06.02", "J44.9"),   # shortness of breath / COPD
    ("R00.0", "I48.91"),   # tachycardia / atrial fibrillation
    ("R10.9", "K35.80"),   # abdominal pain / appendicitis
    ("R31.9", "N20.0"),    # hematuria / kidney stone
])
def test_a_symptom_of_the_diagnosed_body_system_is_dropped(cs, symptom, diagnosis):
    assert run(cs, symptom, diagnosis) == ([diagnosis], {symptom: rules.INTEGRAL_SYMPTOM})
    assert run(cs, symptom) == ([symptom], {})


def test_symptoms_of_another_system_or_general_ones_stay(cs):
    assert run(cs, "R05.9", "I10") == (["R05.9", "I10"], {})  # block R00-R09 names both systems:
    assert run(cs, "R00.0", "J18.9") == (["R00.0", "J18.9"], {})  # R05's notes say respiratory
    assert run(cs, "R10.9", "J18.9") == (["R10.9", "J18.9"], {})
    assert run(cs, "R50.9", "J18.9") == (["R50.9", "J18.9"], {})  # general symptoms and signs
    assert run(cs, "R45.851", "F32.A") == (["R45.851", "F32.A"], {})  # no body system named


def test_a_symptom_the_diagnosis_asks_to_code_stays(cs):
    # N40.1: "Use additional code for associated symptoms ... urinary retention (R33.8)"
    assert run(cs, "R33.8", "N40.1") == (["R33.8", "N40.1"], {})
    assert run(cs, "R31.9", "N40.1") == (["N40.1"], {"R31.9": rules.INTEGRAL_SYMPTOM})


def test_both_rules_together_and_unknown_codes_pass_through(cs):
    kept, dropped, _ = rules.apply([("E11.9", 0.6), ("E11.22", 0.7), ("R05.9", 0.4), ("J18.9", 0.9),
                                 ("X99.99", 0.6)], cs)
    assert kept == [("E11.22", 0.7), ("J18.9", 0.9), ("X99.99", 0.6)]
    assert dropped == [Rejected("E11.9", rules.LESS_SPECIFIC), Rejected("R05.9", rules.INTEGRAL_SYMPTOM)]


def test_a_less_certain_code_displaces_nothing_and_the_contradiction_is_flagged(cs):
    selected = [("E11.9", 0.8), ("E11.22", 0.3), ("R05.9", 0.7), ("J18.9", 0.35)]
    assert rules.apply(selected, cs) == (selected, [], {"E11.9": ["E11.22"]})
    # CKD unspecified beside a less sure stage 4; a generic code the specific one outranks is
    # dropped, not flagged.
    kept, dropped, outranked = rules.apply([("N18.9", 0.7), ("N18.4", 0.3), ("I10", 0.9)], cs)
    assert [c for c, _ in kept] == ["N18.9", "N18.4", "I10"] and outranked == {"N18.9": ["N18.4"]}
    assert rules.apply([("E11.9", 0.3), ("E11.22", 0.8)], cs).outranked == {}


def test_the_pipeline_reports_what_the_rules_drop(cs):
    class Fixed:  # a selector choosing fixed codes, so the rules are what is under test
        name = "fixed"

        def select(self, text, candidates, cancel=None, threshold=0.5):
            from models.contract import CodedItem
            from models.select import Selection

            return Selection([CodedItem(c, "", probability=0.8) for c in
                              ("E11.9", "E11.22", "R05.9", "J18.9")], raw_answer="fixed")

    pipeline = Pipeline(open_selector("retrieval"), cs)
    pipeline.selector = Fixed()
    note = ("Type 2 diabetes with diabetic chronic kidney disease. Cough for a week; chest X-ray "
            "shows pneumonia.")
    result = pipeline.suggest(note)
    assert sorted(result.codes) == ["E11.22", "J18.9"]
    assert {(r.raw, r.reason) for r in result.rejected} >= {
        ("E11.9", rules.LESS_SPECIFIC), ("R05.9", rules.INTEGRAL_SYMPTOM)}


def test_a_generic_code_kept_beside_a_less_sure_specific_one_is_flagged_for_the_coder(cs):
    class Fixed:
        name = "fixed"

        def select(self, text, candidates, cancel=None, threshold=0.5):
            from models.contract import CodedItem
            from models.select import Selection

            return Selection([CodedItem("E11.9", "", probability=0.9), CodedItem("E11.21", "", probability=0.4),
                              CodedItem("I10", "", probability=0.9)], raw_answer="fixed")

    pipeline = Pipeline(open_selector("retrieval"), cs)
    pipeline.selector = Fixed()
    result = pipeline.suggest("Type 2 diabetes mellitus with diabetic nephropathy. Hypertension.")
    by_code = {s.code: s for s in result.suggestions}
    assert set(by_code) == {"E11.9", "E11.21", "I10"}
    assert "more_specific_suggested" in by_code["E11.9"].flags and by_code["E11.9"].more_specific == ["E11.21"]
    assert not by_code["E11.21"].more_specific and "more_specific_suggested" not in by_code["I10"].flags


def test_without_coding_rules_every_mention_is_coded_and_unsupported_codes_come_last(cs):
    """`coding_rules=False` codes every supported mention (CodiEsp's convention); either way a code
    with no words in the note comes after every code that has some."""
    class Fixed:
        name = "fixed"

        def select(self, text, candidates, cancel=None, threshold=0.5):
            from models.contract import CodedItem
            from models.select import Selection

            return Selection([CodedItem("Z79.01", "", probability=0.9)] + [
                CodedItem(c, "", probability=0.8) for c in ("E11.9", "E11.22", "R05.9", "J18.9")])

    note = ("Type 2 diabetes with diabetic chronic kidney disease. Cough for a week; chest X-ray "
            "shows pneumonia.")
    pipeline = Pipeline(open_selector("retrieval"), cs, coding_rules=False)
    pipeline.selector = Fixed()
    result = pipeline.suggest(note)
    assert sorted(result.codes) == ["E11.22", "E11.9", "J18.9", "R05.9", "Z79.01"]
    assert not any(r.reason in (rules.LESS_SPECIFIC, rules.INTEGRAL_SYMPTOM) for r in result.rejected)
    # Z79.01 (long-term anticoagulants) has the highest probability but nothing in the note.
    last = result.suggestions[-1]
    assert last.code == "Z79.01" and "unsupported" in last.flags
    assert all("unsupported" not in s.flags for s in result.suggestions[:-1])
