"""Coding rules after selection, against the real FY2026 code set."""
import pytest

from models import rules
from models.contract import CodedItem, Rejected
from models.pipeline import Pipeline
from models.select import Selection, open_selector


def fixed_pipeline(cs, chosen, coding_rules=True):
    """The pipeline with a selector that always chooses `chosen` ((code, probability) pairs), so
    that what the rules make of them is what is under test."""
    class Fixed:
        name = "fixed"

        def select(self, text, candidates, cancel=None, threshold=0.5):
            return Selection([CodedItem(c, "", probability=p) for c, p in chosen], raw_answer="fixed")

    pipeline = Pipeline(open_selector("retrieval"), cs, coding_rules=coding_rules)
    pipeline.selector = Fixed()
    return pipeline


def run(cs, *codes):
    kept, dropped, *_ = rules.apply([(c, 0.5) for c in codes], cs)
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


def test_a_symptom_whose_excludes1_names_the_diagnosis_is_dropped_whatever_its_block(cs):
    # R73 (abnormal blood findings, no body system in its block's title): Excludes1 diabetes
    # mellitus (E08-E13), so never coded beside it.
    assert run(cs, "R73.9", "E11.65") == (["E11.65"], {"R73.9": rules.INTEGRAL_SYMPTOM})
    assert run(cs, "R73.9", "E78.5") == (["R73.9", "E78.5"], {})  # named by no Excludes1
    # Only beside a diagnosis at least as sure.
    kept, dropped, *_ = rules.apply([("R73.9", 0.8), ("E11.65", 0.3)], cs)
    assert [c for c, _ in kept] == ["R73.9", "E11.65"] and dropped == []


def test_a_symptom_the_diagnosis_asks_to_code_stays(cs):
    # N40.1: "Use additional code for associated symptoms ... urinary retention (R33.8)"
    assert run(cs, "R33.8", "N40.1") == (["R33.8", "N40.1"], {})
    assert run(cs, "R31.9", "N40.1") == (["N40.1"], {"R31.9": rules.INTEGRAL_SYMPTOM})


def test_both_rules_together_and_unknown_codes_pass_through(cs):
    kept, dropped, *_ = rules.apply([("E11.9", 0.6), ("E11.22", 0.7), ("R05.9", 0.4), ("J18.9", 0.9),
                                 ("X99.99", 0.6)], cs)
    assert kept == [("E11.22", 0.7), ("J18.9", 0.9), ("X99.99", 0.6)]
    assert dropped == [Rejected("E11.9", rules.LESS_SPECIFIC), Rejected("R05.9", rules.INTEGRAL_SYMPTOM)]


def test_a_less_certain_code_displaces_nothing_and_the_contradiction_is_flagged(cs):
    selected = [("E11.9", 0.8), ("E11.22", 0.3), ("R05.9", 0.7), ("J18.9", 0.35)]
    assert rules.apply(selected, cs) == (selected, [], {"E11.9": ["E11.22"]}, {})
    # CKD unspecified beside a less sure stage 4; a generic code the specific one outranks is
    # dropped, not flagged.
    kept, _, outranked, _ = rules.apply([("N18.9", 0.7), ("N18.4", 0.3), ("E78.5", 0.9)], cs)
    assert [c for c, _ in kept] == ["N18.9", "N18.4", "E78.5"] and outranked == {"N18.9": ["N18.4"]}
    assert rules.apply([("E11.9", 0.3), ("E11.22", 0.8)], cs).outranked == {}


@pytest.mark.parametrize("selected, combination, dropped", [
    # Includes notes: I12 "any condition in N18 and N26 - due to hypertension", the child by the
    # CKD stage its "Use additional code" note asks for.
    (["I10", "N18.4"], "I12.9", "I10"),
    (["I10", "N18.6"], "I12.0", "I10"),
    (["I10", "I50.22"], "I11.0", "I10"),   # with heart failure
    (["I10", "I50.22", "N18.4"], "I13.0", "I10"),  # I13: any condition in I11 with any in I12
    # A "with" code of the generic code's category asks for the other code.
    (["E11.9", "N18.4"], "E11.22", "E11.9"),
    (["E10.9", "N18.30"], "E10.22", "E10.9"),
])
def test_two_conditions_icd_10_cm_reports_with_one_code_get_the_combination_code(
        cs, selected, combination, dropped):
    applied = rules.apply([(c, 0.6) for c in selected[:1]] + [(c, 0.5) for c in selected[1:]], cs)
    codes = [c for c, _ in applied.kept]
    assert codes == [combination, *selected[1:]]  # in place of what it reports; the rest stay
    assert applied.dropped == [Rejected(dropped, rules.IN_COMBINATION)]
    assert applied.combined == {combination: selected}
    assert dict(applied.kept)[combination] == 0.5  # as sure as the least sure of its codes


def test_a_condition_the_combination_code_includes_but_does_not_ask_for_goes_with_it(cs):
    # I11 includes I51.9 (heart disease, unspecified) due to hypertension; I11.9 asks for nothing.
    assert run(cs, "I10", "I51.9") == (["I11.9"], {"I10": rules.IN_COMBINATION, "I51.9": rules.IN_COMBINATION})
    assert run(cs, "I10", "I51.9", "N18.30") == (["I13.10", "N18.30"], {
        "I10": rules.IN_COMBINATION, "I51.9": rules.IN_COMBINATION})


def test_no_combination_without_both_conditions_or_where_the_choice_is_a_guess(cs):
    assert run(cs, "I10", "E78.5") == (["I10", "E78.5"], {})
    assert run(cs, "I10", "N26.9") == (["I10", "N26.9"], {})  # no I12 code asks for N26
    assert run(cs, "E11.9", "I10") == (["E11.9", "I10"], {})
    # L97.419 is a site that E11.621 (foot ulcer) and E11.622 (other skin ulcer) both ask for.
    assert run(cs, "E11.9", "L97.419") == (["E11.9", "L97.419"], {})
    # I12.9 selected itself reports the hypertension, when at least as sure; else both are
    # kept and I10 flagged.
    assert run(cs, "I10", "I12.9") == (["I12.9"], {"I10": rules.IN_COMBINATION})
    applied = rules.apply([("I10", 0.9), ("I12.9", 0.4)], cs)
    assert [c for c, _ in applied.kept] == ["I10", "I12.9"] and applied.outranked == {"I10": ["I12.9"]}


def test_the_pipeline_reports_what_the_rules_drop(cs):
    pipeline = fixed_pipeline(cs, [(c, 0.8) for c in ("E11.9", "E11.22", "R05.9", "J18.9")])
    note = ("Type 2 diabetes with diabetic chronic kidney disease. Cough for a week; chest X-ray "
            "shows pneumonia.")
    result = pipeline.suggest(note)
    assert sorted(result.codes) == ["E11.22", "J18.9"]
    assert {(r.raw, r.reason) for r in result.rejected} >= {
        ("E11.9", rules.LESS_SPECIFIC), ("R05.9", rules.INTEGRAL_SYMPTOM)}


def test_a_generic_code_kept_beside_a_less_sure_specific_one_is_flagged_for_the_coder(cs):
    pipeline = fixed_pipeline(cs, [("E11.9", 0.9), ("E11.21", 0.4), ("I10", 0.9)])
    result = pipeline.suggest("Type 2 diabetes mellitus with diabetic nephropathy. Hypertension.")
    by_code = {s.code: s for s in result.suggestions}
    assert set(by_code) == {"E11.9", "E11.21", "I10"}
    assert "more_specific_suggested" in by_code["E11.9"].flags and by_code["E11.9"].more_specific == ["E11.21"]
    assert not by_code["E11.21"].more_specific and "more_specific_suggested" not in by_code["I10"].flags


def test_the_pipeline_suggests_the_combination_with_the_words_of_its_conditions(cs):
    pipeline = fixed_pipeline(cs, [("I10", 0.9), ("N18.4", 0.7), ("E11.9", 0.8)])
    note = "Assessment: 1. Essential hypertension. 2. Type 2 diabetes. 3. CKD stage 4, eGFR 24."
    result = pipeline.suggest(note)
    by_code = {s.code: s for s in result.suggestions}
    assert set(by_code) == {"I12.9", "E11.22", "N18.4"}
    assert {(r.raw, r.reason) for r in result.rejected} >= {("I10", rules.IN_COMBINATION),
                                                           ("E11.9", rules.IN_COMBINATION)}
    i12 = by_code["I12.9"]
    assert i12.flags == ["combination"] and i12.combines == ["I10", "N18.4"]
    assert i12.evidence.text in ("Essential hypertension", "CKD stage 4") and i12.confidence == 0.7
    assert by_code["E11.22"].combines == ["E11.9", "N18.4"] and by_code["E11.22"].evidence is not None
    # Each in the place of the code it replaces (all three at 0.7).
    assert [s.code for s in result.suggestions] == ["I12.9", "N18.4", "E11.22"]


def test_without_coding_rules_every_mention_is_coded_and_unsupported_codes_come_last(cs):
    """`coding_rules=False` codes every supported mention (CodiEsp's convention); either way a code
    with no words in the note comes after every code that has some."""
    note = ("Type 2 diabetes with diabetic chronic kidney disease. Cough for a week; chest X-ray "
            "shows pneumonia.")
    pipeline = fixed_pipeline(cs, [("Z79.01", 0.9)] + [(c, 0.8) for c in ("E11.9", "E11.22", "R05.9", "J18.9")],
                              coding_rules=False)
    result = pipeline.suggest(note)
    assert sorted(result.codes) == ["E11.22", "E11.9", "J18.9", "R05.9", "Z79.01"]
    assert not any(r.reason in (rules.LESS_SPECIFIC, rules.INTEGRAL_SYMPTOM) for r in result.rejected)
    # Z79.01 (long-term anticoagulants) has the highest probability but nothing in the note.
    last = result.suggestions[-1]
    assert last.code == "Z79.01" and "unsupported" in last.flags
    assert all("unsupported" not in s.flags for s in result.suggestions[:-1])


CLINIC_NOTE = (
    "HPI: 58-year-old man with fever, productive cough and fatigue for four days.\n"
    "Exam: crackles at the right base.\n\n"
    "ASSESSMENT AND PLAN:\n1. Community-acquired pneumonia. Start amoxicillin.\n"
    "2. Essential hypertension, controlled.\n")


def test_symptoms_the_assessment_leaves_out_are_not_coded_beside_its_diagnosis(cs):
    codes = ["J18.9", "I10", "R50.9", "R05.9", "R53.83"]
    assert rules.unassessed(cs, CLINIC_NOTE, codes) == [
        Rejected(c, rules.NOT_IN_ASSESSMENT) for c in ("R50.9", "R05.9", "R53.83")]
    # A symptom the assessment names stays (a problem of its own at this visit).
    with_headache = CLINIC_NOTE + "3. Headache, tension type suspected, ibuprofen as needed.\n"
    assert rules.unassessed(cs, with_headache, codes + ["R51.9"]) == [
        Rejected(c, rules.NOT_IN_ASSESSMENT) for c in ("R50.9", "R05.9", "R53.83")]
    # The diagnosis is named in a wording of its parent's: "Graves' disease", at E05.0, is E05.00.
    graves = ("HPI: palpitations, weight loss and a fine tremor.\nAssessment: Graves disease with "
              "diffuse goiter, no thyroid storm.\nPlan: methimazole.\n")
    assert rules.unassessed(cs, graves, ["E05.00", "R00.2", "R63.4", "R25.1"]) == [
        Rejected(c, rules.NOT_IN_ASSESSMENT) for c in ("R00.2", "R63.4", "R25.1")]
    # A diagnosis stated across the commas of one item names itself: the fever goes beside it.
    ear = "HPI: fever and right ear pain.\nAssessment: Acute suppurative otitis media, right ear, without " \
          "rupture of the eardrum.\nPlan: amoxicillin.\n"
    assert rules.unassessed(cs, ear, ["H66.001", "R50.9"]) == [Rejected("R50.9", rules.NOT_IN_ASSESSMENT)]
    # A "Pain in <site>" of the musculoskeletal chapter is a symptom too.
    wrist = "HPI: fell on her outstretched hand; wrist pain and swelling.\nAssessment: Closed Colles' " \
            "fracture of the left distal radius, initial encounter.\n"
    assert rules.unassessed(cs, wrist, ["S52.532A", "M25.532"]) == [Rejected("M25.532", rules.NOT_IN_ASSESSMENT)]
    # ... named only with its site: the sciatica is the pain in the leg.
    back = "HPI: back pain down the left leg.\nAssessment: Acute low back pain with left-sided sciatica.\n"
    assert rules.unassessed(cs, back, ["M54.42", "M79.605"]) == [Rejected("M79.605", rules.NOT_IN_ASSESSMENT)]
    assert rules.unassessed(cs, back.replace("sciatica", "sciatica and left leg pain"), ["M54.42", "M79.605"]) == []


def test_symptoms_stay_without_an_assessment_or_without_a_diagnosis_in_it(cs):
    # A case report (CodiEsp) has no assessment heading; "assessment" in prose is not one.
    report = CLINIC_NOTE.replace("ASSESSMENT AND PLAN:", "Cardiology assessment was normal.")
    assert rules.unassessed(cs, report, ["J18.9", "R50.9"]) == []
    # Symptoms only: the physician has established no diagnosis that could explain them.
    open_question = "HPI: fever and cough for four days.\nA/P: fatigue, likely viral. Fluids and rest.\n"
    assert rules.unassessed(cs, open_question, ["R50.9", "R05.9", "R53.83"]) == []


def test_the_app_sample_note_gets_no_code_for_the_fever_its_pneumonia_explains(cs):
    from desktop.__main__ import SAMPLE_NOTE

    result = Pipeline(open_selector("retrieval"), cs).suggest(SAMPLE_NOTE)
    assert not any(c.startswith("R") for c in result.codes)
    assert {"I10", "E11.9"} <= set(result.codes) and any(c.startswith("J18") for c in result.codes)


def test_an_unspecified_code_gives_way_to_the_specific_one_the_assessment_states(cs):
    note = "HPI: palpitations.\nAssessment: permanent atrial fibrillation, rate controlled.\n"
    assert rules.specific_in_assessment(cs, note, ["I48.91", "I10"]) == {"I48.91": "I48.21"}
    ckd = "Assessment and plan:\n1. Chronic kidney disease, stage 4 (severe). Refer to nephrology.\n"
    assert rules.specific_in_assessment(cs, ckd, ["N18.9"]) == {"N18.9": "N18.4"}
    # Said only in the history, negated, or in a note without an assessment: nothing changes.
    assert rules.specific_in_assessment(
        cs, "HPI: permanent atrial fibrillation.\nAssessment: atrial fibrillation.\n", ["I48.91"]) == {}
    assert rules.specific_in_assessment(
        cs, "Assessment: atrial fibrillation, no evidence of permanent atrial fibrillation.\n", ["I48.91"]) == {}
    assert rules.specific_in_assessment(cs, "Permanent atrial fibrillation.", ["I48.91"]) == {}
    # A residual "other" code is not a more specific one.
    assert rules.specific_in_assessment(cs, "Assessment: other fever.\n", ["R50.9"]) == {}


def test_without_complications_gives_way_to_the_complication_the_assessment_states(cs):
    note = ("HPI: follow-up of diabetes; glucose in the 300s.\n\nAssessment:\n"
            "1. Type 2 diabetes mellitus with hyperglycemia. Continues long-term insulin.\n2. Hyperlipidemia.\n")
    assert rules.specific_in_assessment(cs, note, ["E11.9"]) == {"E11.9": "E11.65"}
    # The selector suggested both, the complication the less sure: the assessment settles it,
    # and the hyperglycemia it explains goes with the generic code. E11 asks for the insulin.
    pipeline = fixed_pipeline(cs, [("E11.9", 0.9), ("R73.9", 0.7), ("E78.5", 0.6), ("E11.65", 0.3)])
    result = pipeline.suggest(note)
    assert result.codes == ["E11.65", "Z79.4", "E78.5"]
    e11 = result.suggestions[0]
    assert e11.confidence == pytest.approx(0.9) and "stated_in_assessment" in e11.flags
    assert {(r.raw, r.reason) for r in result.rejected} >= {
        ("E11.9", rules.LESS_SPECIFIC), ("R73.9", rules.INTEGRAL_SYMPTOM)}
    # Without an assessment stating it, the two stay, flagged for the coder.
    plain = fixed_pipeline(cs, [("E11.9", 0.9), ("E11.65", 0.3)]).suggest("Type 2 diabetes with high sugars.")
    assert sorted(plain.codes) == ["E11.65", "E11.9"]


def test_a_clinic_note_is_coded_the_way_a_coder_would(cs):
    """Stated CKD stage, hypertension and diabetes on insulin: the specific stage, then the
    combination codes for each (I12.9, E11.22), whatever the selector proposed in their place, and
    the long-term insulin E11 asks for (Z79.4)."""
    note = ("HPI: 68-year-old man with type 2 diabetes mellitus and essential hypertension. Mild ankle "
            "swelling in the evenings.\n\nAssessment and plan:\n1. Essential hypertension, not at goal.\n"
            "2. Chronic kidney disease, stage 4 (severe). Refer to nephrology.\n"
            "3. Type 2 diabetes mellitus, on insulin. Continue.\n")
    pipeline = fixed_pipeline(cs, [("E11.9", 0.9), ("I10", 0.8), ("N18.9", 0.7), ("R60.9", 0.5)])
    result = pipeline.suggest(note)
    assert sorted(result.codes) == ["E11.22", "I12.9", "N18.4", "Z79.4"]
    n18 = {s.code: s for s in result.suggestions}["N18.4"]
    assert n18.flags == ["stated_in_assessment"]  # and supported: its words span a comma
    assert n18.evidence.text.startswith("Chronic kidney disease, stage 4")
    # R60.9 "Edema": the note says "swelling", no word of the code's: in a clinic note such a
    # guess goes before the rules read it.
    assert {(r.raw, r.reason) for r in result.rejected} >= {
        ("N18.9", rules.LESS_SPECIFIC), ("I10", rules.IN_COMBINATION), ("E11.9", rules.IN_COMBINATION),
        ("R60.9", rules.NO_EVIDENCE)}


def test_a_retrieved_code_the_assessment_states_in_its_own_words_is_suggested(cs):
    note = "HPI: palpitations.\nAssessment: 1. Permanent atrial fibrillation. 2. Essential hypertension.\n"
    pool = ["I48.91", "I48.21", "I10", "R00.2"]
    assert rules.stated_in_assessment(cs, note, pool, ["I10"]) == ["I48.21"]
    assert rules.stated_in_assessment(cs, note, pool, ["I10", "I48.91"]) == []  # its category is taken
    # Named only in the history, or in a note without an assessment: not added (the item
    # "Palpitations." states R00.2).
    history = note.replace("Permanent atrial fibrillation", "Palpitations").replace(
        "palpitations", "permanent atrial fibrillation")
    assert rules.stated_in_assessment(cs, history, pool, []) == ["I10", "R00.2"]
    assert rules.stated_in_assessment(cs, "Permanent atrial fibrillation.", pool, []) == []
    # A wording that says what is absent is stated only where the note says it is absent.
    migraine = "Assessment: 1. Migraine without aura, two attacks a month.\n"
    pool = ["G43.909", "G43.109", "G43.009"]
    assert rules.stated_in_assessment(cs, migraine, pool, []) == ["G43.009"]
    assert rules.stated_in_assessment(cs, migraine.replace("without", "with"), pool, []) == ["G43.109"]
    assert rules.specific_in_assessment(cs, migraine, ["G43.909"]) == {"G43.909": "G43.009"}
    # A one-word wording is too little to go on inside a longer diagnosis ("pneumonia" is in
    # "pneumonia due to Streptococcus pneumoniae"); an item that says that word and nothing
    # else states it, "unspecified" or not.
    assert rules.stated_in_assessment(cs, "Assessment: pneumonia of the left lower lobe.\n", ["J18.9"], []) == []
    assert rules.stated_in_assessment(cs, "Assessment: pneumonia.\n", ["J18.9"], []) == ["J18.9"]

    pipeline = fixed_pipeline(cs, [("I10", 0.9)])
    result = pipeline.suggest(note)
    assert "I48.21" in result.codes and "I10" in result.codes
    by_code = {s.code: s for s in result.suggestions}
    assert "stated_in_assessment" in by_code["I48.21"].flags and "stated_in_assessment" not in by_code["I10"].flags


def test_a_code_for_the_side_the_note_does_not_name_is_not_suggested(cs):
    """A left-knee note: the right-knee code goes, the left-knee one stays; a bilateral code needs
    both sides ("both eyes" counts, "both diabetes and..." does not); a note naming no side, or a
    code whose category has no sides (I50.1 "Left ventricular failure"), is left alone."""
    left_knee = "Pain in the left knee for three months, worse with stairs."
    assert rules.wrong_side(cs, left_knee, ["M25.561", "M25.562", "M25.569", "I10", "I50.1"]) == [
        Rejected("M25.561", rules.WRONG_SIDE)]
    assert rules.wrong_side(cs, "Knee pain for three months.", ["M25.561"]) == []
    assert rules.wrong_side(cs, "Cortical cataract of the left eye.", ["H25.013", "H25.012"]) == [
        Rejected("H25.013", rules.WRONG_SIDE)]
    for both in ("Cortical cataract in both eyes; left worse.", "Bilateral cortical cataract, left worse."):
        assert rules.wrong_side(cs, both, ["H25.013", "H25.011", "H25.012"]) == []
    assert rules.wrong_side(cs, "Both diabetes and a left eye cataract.", ["H25.013"]) == [
        Rejected("H25.013", rules.WRONG_SIDE)]
    # An injury's sides are one level above its 7th character: S93.402A (left ankle) sits under
    # S93.402, which holds only its encounters; S93.401A (right) is under S93.40 with it.
    right_ankle = "Sprain of the right anterior talofibular ligament, initial encounter."
    assert rules.wrong_side(cs, right_ankle, ["S93.402A", "S93.401A", "S93.491A", "T14.90XA"]) == [
        Rejected("S93.402A", rules.WRONG_SIDE)]
    # Through the pipeline: reported with its reason, whatever the selector's confidence.
    result = fixed_pipeline(cs, [("M25.561", 0.9), ("M25.562", 0.5)]).suggest(left_knee)
    assert result.codes == ["M25.562"]
    assert Rejected("M25.561", rules.WRONG_SIDE) in result.rejected


def test_one_named_side_states_a_unilateral_code(cs):
    """ICD-10-CM writes "Unilateral primary osteoarthritis, left knee"; a physician writes "primary
    osteoarthritis of left knee". One side named is unilateral; "both knees" is bilateral."""
    note = "HPI: knee pain.\nAssessment and plan:\n1. Primary osteoarthritis of left knee: physical therapy.\n"
    pool = ["M25.562", "M17.9", "M17.12", "M17.0", "M17.11"]
    assert rules.stated_in_assessment(cs, note, pool, []) == ["M17.12"]
    assert rules.specific_in_assessment(cs, note, ["M17.9"]) == {"M17.9": "M17.12"}
    assert rules.stated_in_assessment(cs, note.replace("left knee", "both knees"), pool, []) == ["M17.0"]
    # Two sides of two different joints are not "bilateral" knee.
    assert rules.stated_in_assessment(cs, note.replace("left knee", "right knee and left hip"), pool, []) == []


def test_pain_at_the_site_of_a_diagnosis_is_integral_to_it(cs):
    """Knee pain is part of the osteoarthritis of that knee (guideline I.B.5): "Pain in left knee"
    goes beside M17.12, stays beside the other knee's disease, beside a finding of its own
    category (M25.451 effusion of the hip) and beside a diagnosis of another site."""
    assert run(cs, "M25.562", "M17.12") == (["M17.12"], {"M25.562": rules.INTEGRAL_SYMPTOM})
    assert run(cs, "M25.561", "M17.12")[1] == {}            # right knee pain, left knee arthritis
    assert run(cs, "M25.569", "M17.12")[1] == {"M25.569": rules.INTEGRAL_SYMPTOM}  # side unsaid
    assert run(cs, "M25.551", "M25.451")[1] == {}           # both findings of the hip (M25)
    assert run(cs, "M25.551", "M17.12")[1] == {}            # hip pain, knee arthritis
    assert run(cs, "M25.551", "M16.11", "I10")[0] == ["M16.11", "I10"]  # hip arthritis: hip pain goes


def test_a_diagnosis_the_assessment_states_displaces_the_pain_at_its_site(cs):
    """The left-knee clinic note: the ranker is surer of "Pain in left knee" than of the
    osteoarthritis, but the assessment establishes the osteoarthritis, so the pain is not coded."""
    note = ("HPI: pain in the left knee for 3 months, worse with stairs.\n"
            "Assessment and plan:\n1. Primary osteoarthritis of left knee, knee pain on stairs: physical therapy.\n")
    result = fixed_pipeline(cs, [("M25.562", 0.6), ("M17.12", 0.2)]).suggest(note)
    assert result.codes == ["M17.12"]
    assert Rejected("M25.562", rules.INTEGRAL_SYMPTOM) in result.rejected
    # Without the assessment the surer pain code stays beside the less sure diagnosis.
    plain = fixed_pipeline(cs, [("M25.562", 0.6), ("M17.12", 0.2)]).suggest(note.split("Assessment")[0])
    assert set(plain.codes) == {"M25.562", "M17.12"}


@pytest.mark.parametrize("codes, note, added", [
    (["E11.65"], "Medications: metformin 1000 mg BID, lisinopril 20 mg daily.", {"Z79.84"}),
    (["E11.9"], "On insulin glargine 20 units nightly and Januvia 100 mg daily.", {"Z79.4", "Z79.84"}),
    (["E11.9"], "Takes Ozempic 1 mg weekly.", {"Z79.85"}),
    (["I82.501"], "Chronic DVT of the right leg, on apixaban 5 mg twice daily.", {"Z79.01"}),
    (["E10.9"], "Type 1 diabetes on an insulin pump.", set()),            # E10 asks for no Z79.4
    (["I10"], "Medications: metformin 500 mg BID.", set()),               # no code asks for it
    (["E11.9"], "Metformin was discontinued last year.", set()),          # stopped
    (["E11.9"], "Plan: start metformin 500 mg daily.", set()),            # begun at this visit
    (["E11.9"], "Allergic to metformin.", set()),                         # refused
    (["E11.9"], "Insulin resistance; anti-insulin antibodies negative.", set()),  # not the drug
    (["E11.9"], "He denies taking metformin.", set()),                    # negated
    (["E11.9", "Z79.84"], "On metformin.", set()),                        # already suggested
])
def test_a_code_asks_for_the_drug_therapy_the_note_names(cs, codes, note, added):
    """ICD-10-CM's "Use additional code" notes ask for the long-term drug therapy by its class
    (E11: insulin Z79.4, oral antidiabetic drugs Z79.84; I82.5: anticoagulants Z79.01); a coder
    adds it when the note names a current drug of that class."""
    found = rules.drug_therapy(cs, note, codes)
    assert set(found) == added
    for span, asking in found.values():  # the drug's name is the evidence
        assert asking == [codes[0]]
        assert note[span[0]:span[1]].lower() in {"metformin", "insulin", "januvia", "ozempic", "apixaban"}


@pytest.mark.parametrize("chosen, note, added, flag, evidence", [
    ("E11.65", "HPI: type 2 diabetes, takes metformin 1000 mg twice daily.\nAssessment and plan:\n"
     "1. Type 2 diabetes mellitus with hyperglycemia: increase metformin.\n", "Z79.84", "additional_code", "metformin"),
    ("E66.812", "Endocrinology follow-up.\nExam: Weight 118 kg, BMI 37.4.\nAssessment:\n"
     "1. Class 2 obesity, BMI 37.4.\n", "Z68.37", "additional_code", "BMI 37.4"),
    ("I48.21", "Cardiology follow-up.\nHPI: permanent atrial fibrillation, takes apixaban 5 mg twice daily.\n"
     "Assessment:\n1. Permanent atrial fibrillation. Continue apixaban long term.\n", "Z79.01", "long_term_drug_stated",
     "apixaban"),
    ("I10", "Primary care visit.\nHPI: blood pressure check; father had colon cancer at 52.\nAssessment:\n"
     "1. Essential hypertension.\n2. Family history of colon cancer in a first-degree relative.\n", "Z80.0",
     "stated_in_assessment", "Family history of colon cancer in a first-degree relative"),
])
def test_the_pipeline_adds_the_code_the_rules_ask_for_with_what_the_note_records_as_evidence(
        cs, chosen, note, added, flag, evidence):
    """A drug therapy or BMI that the chosen code asks for (as sure as the code asking), and the
    long-term drug the note states: each with the words of the note it rests on."""
    pipeline = fixed_pipeline(cs, [(chosen, 0.9)])
    result = pipeline.suggest(note)
    assert result.codes == [chosen, added]
    code = result.suggestions[1]
    assert code.flags == [flag] and code.evidence.text == evidence
    if flag == "additional_code":
        assert code.asked_by == [chosen] and code.confidence == pytest.approx(0.9)
    else:  # as sure as the codes a note states proved on train, out of fold: not the ranker's
        # threshold (the shipped retriever measured it), nor the halved confidence of a guess
        retriever = pipeline.retriever
        assert retriever.stated_precision > retriever.threshold
        assert code.confidence == pytest.approx(retriever.stated_precision)
    # Without coding rules, only what was selected.
    assert fixed_pipeline(cs, [(chosen, 0.9)], coding_rules=False).suggest(note).codes == [chosen]


@pytest.mark.parametrize("item, code", [
    ("Family history of premature coronary disease.", "Z82.49"),
    ("Family history of colon cancer in a first-degree relative: colonoscopy now.", "Z80.0"),
    ("Family history of breast cancer in her mother and sister.", "Z80.3"),
    ("Family history of sudden cardiac death.", "Z82.41"),
    ("Personal history of basal cell carcinoma, no recurrence.", "Z85.828"),
    ("Personal history of pulmonary embolism, off anticoagulation.", "Z86.711"),
    # No range of its own: the title the search finds for the whole statement.
    ("Personal history of colon polyps, due for surveillance colonoscopy.", "Z86.0100"),
    ("Family history of colon polyps.", "Z83.719"),
    # No title says its words: the range the conditions found for it fall in.
    ("Family history of hypertension.", "Z82.49"),
    ("Family history of alcoholism.", "Z81.1"),
])
def test_a_history_the_assessment_states_is_coded_by_the_range_that_holds_its_condition(cs, item, code):
    """ICD-10-CM's history codes name what they report by range ("Conditions classifiable to
    C15-C26" on Z80.0): the condition the assessment names is searched, and the history code
    whose range holds it and whose title says most of its words is the one."""
    note = f"Clinic visit.\nHPI: follow-up.\nAssessment:\n1. Essential hypertension.\n2. {item}\n"
    found = rules.history_of(cs, note, ["I10"])
    assert list(found) == [code]
    start, end = found[code]
    assert note[start:end] == item.split(":")[0].split(",")[0].rstrip(".")


def test_a_history_outside_the_assessment_denied_or_already_coded_adds_nothing(cs):
    """Family history in the HPI of a sprain visit is not what the visit is coded for; "No family
    history of ..." states none; a code of the category already chosen (the note's own words
    found it) is not doubled; what no history code's title names gets no guess."""
    assert rules.history_of(cs, ANKLE_NOTE, ["S93.491A"]) == {}
    note = "Clinic visit.\nAssessment:\n1. Rectal bleeding. No family history of colon cancer.\n"
    assert rules.history_of(cs, note, ["K62.5"]) == {}
    note = "Clinic visit.\nAssessment:\n1. Family history of colon cancer.\n"
    assert rules.history_of(cs, note, ["Z80.0"]) == {} and list(rules.history_of(cs, note, [])) == ["Z80.0"]
    assert rules.history_of(cs, "Clinic visit.\nAssessment: Family history of longevity.\n", []) == {}


def test_a_malignancy_in_the_personal_history_is_not_coded_as_current(cs):
    """"Personal history of basal cell carcinoma" (Z85.828, range C44) and an HPI's "history of
    basal cell carcinoma of the nose, excised": C44.311 goes; a cancer outside that range, or
    with no personal history code beside it, stays."""
    assert [r.raw for r in rules.in_personal_history(cs, ["L57.0", "C44.311", "Z85.828", "C61"])] == ["C44.311"]
    assert all(r.reason == rules.IN_PERSONAL_HISTORY for r in rules.in_personal_history(cs, ["C44.311", "Z85.828"]))
    assert rules.in_personal_history(cs, ["C44.311", "Z80.8"]) == []  # a relative's history


ANKLE_NOTE = ("Urgent care, injury visit.\nHPI: 31-year-old man turned his right ankle stepping off a curb "
              "this morning, pain and swelling over the outer ankle. Family history: mother with breast "
              "cancer.\nExam: tender over the anterior talofibular ligament, no bony tenderness.\n"
              "Assessment: Sprain of the right anterior talofibular ligament, initial encounter.\n"
              "Plan: brace, ice, ibuprofen.\n")


def test_an_inclusion_term_of_a_parent_states_the_code_of_the_side_the_note_names(cs):
    """"Sprain of talofibular ligament" is an inclusion term of S93.49, so it holds for the three
    codes under it; the side the assessment names picks one (S93.491A, right), and the ankle
    "unspecified" is never the stated one."""
    pool = ["T14.90XA", "S93.401A", "S93.491A", "S93.492A", "S93.499A"]
    assert rules.stated_in_assessment(cs, ANKLE_NOTE, pool, ["T14.90XA"]) == ["S93.491A"]
    assert rules.stated_in_assessment(cs, ANKLE_NOTE.replace("right", "left"), pool, []) == ["S93.492A"]
    # No side named: S93.491A and S93.492A say as much, and which one is a guess.
    assert rules.stated_in_assessment(cs, ANKLE_NOTE.replace("right ", ""), pool, []) == []
    assert "Sprain of talofibular ligament" in cs.inclusion_terms("S93.491A", inherited=True)
    assert cs.inclusion_terms("S93.491A") == []


def test_an_unspecified_code_of_another_category_gives_way_to_the_code_that_reports_it(cs):
    """"Injury, unspecified" beside a sprain of the ankle (block "Injuries to the ankle and foot"),
    "Malignant neoplasm, unspecified" beside prostate cancer, "Heart disease, unspecified" beside
    coronary atherosclerosis: the specific code reports the condition. Not a code the specific
    one asks for (I11.0 asks for the heart failure's type), nor one of another chapter."""
    for generic, specific in (("T14.90XA", "S93.491A"), ("C80.1", "C61"), ("I51.9", "I25.10")):
        assert run(cs, generic, specific) == ([specific], {generic: rules.LESS_SPECIFIC})
    assert run(cs, "I50.9", "I11.0") == (["I50.9", "I11.0"], {})
    assert run(cs, "R52", "S93.491A") == (["R52", "S93.491A"], {})
    assert run(cs, "J98.9", "J18.9") == (["J98.9", "J18.9"], {})  # "Respiratory disorder" is not in J18's titles
    # Less sure than the generic code: both stay, the generic one flagged for the coder.
    kept, dropped, outranked, _ = rules.apply([("T14.90XA", 0.6), ("S93.491A", 0.3)], cs)
    assert [c for c, _ in kept] == ["T14.90XA", "S93.491A"] and outranked == {"T14.90XA": ["S93.491A"]}


def test_an_injury_note_is_coded_with_the_sprain_its_assessment_states(cs):
    """What the ranker proposed for the ankle note (CodiEsp's habits): an unspecified injury, pain,
    and the family history of the HPI. A coder reports the sprain the assessment states, and
    neither the injury it reports, the pain it explains, nor a family history the visit does not
    address."""
    result = fixed_pipeline(cs, [("T14.90XA", 0.4), ("R52", 0.35), ("Z80.3", 0.3)]).suggest(ANKLE_NOTE)
    assert result.codes == ["S93.491A"]
    assert "talofibular ligament" in result.suggestions[0].evidence.text
    assert {(r.raw, r.reason) for r in result.rejected} == {
        ("T14.90XA", rules.LESS_SPECIFIC), ("R52", rules.NOT_IN_ASSESSMENT),
        ("Z80.3", rules.FAMILY_NOT_IN_ASSESSMENT)}


def test_a_family_history_is_coded_where_the_assessment_addresses_it(cs):
    codes = ["S93.491A", "Z80.3"]
    assert rules.unassessed(cs, ANKLE_NOTE, codes) == [Rejected("Z80.3", rules.FAMILY_NOT_IN_ASSESSMENT)]
    screening = ANKLE_NOTE.replace("Plan:", "Family history of breast cancer in her mother: refer for "
                                   "genetic counseling.\nPlan:")
    assert rules.unassessed(cs, screening, codes) == []
    # A case report (no assessment heading) is left alone, as for symptoms.
    assert rules.unassessed(cs, ANKLE_NOTE.replace("Assessment:", "Diagnosis was"), codes) == []


def test_a_complication_the_note_says_is_absent_is_not_coded(cs):
    """"Type 2 diabetes mellitus without complications" contradicts E11.8 "with unspecified
    complications" and E11.69 "with other specified complication"; not E11.65 "with
    hyperglycemia", which names what it has, nor type 1 diabetes's E10.8."""
    note = ("HPI: 68-year-old man with prostate cancer on surveillance and type 2 diabetes mellitus "
            "without complications, on metformin.\nAssessment: Prostate cancer, stable. Diabetes, A1c 6.8.\n")
    codes = ["C61", "E11.8", "E11.69", "E11.65", "E10.8"]
    assert rules.contradicted(cs, note, codes) == [
        Rejected("E11.8", rules.CONTRADICTED), Rejected("E11.69", rules.CONTRADICTED)]
    assert rules.contradicted(cs, note.replace("without complications", "with complications"), codes) == []
    result = fixed_pipeline(cs, [("C61", 0.9), ("E11.9", 0.8), ("E11.8", 0.3)]).suggest(note)
    assert result.codes == ["C61", "E11.9", "Z79.84"]
    assert Rejected("E11.8", rules.CONTRADICTED) in result.rejected


def test_a_relatives_condition_in_the_assessment_states_no_diagnosis_of_the_patient(cs):
    """"Family history of premature coronary disease" holds I25.10's inclusion term "Coronary
    (artery) disease" (on its parent I25.1), but it is the father's disease."""
    note = ("HPI: chest pressure on exertion. Father had a myocardial infarction at 52.\nAssessment:\n"
            "1. Exertional chest pressure, rule out coronary artery disease.\n2. Essential hypertension.\n"
            "3. Family history of premature coronary disease.\n")
    assert rules.stated_in_assessment(cs, note, ["I25.10", "I10"], ["I10"]) == []
    assert rules.established_in_assessment(cs, note, ["I25.10", "I10"]) == frozenset({"I10"})
    # Stated for the patient, it is stated.
    own = note.replace("3. Family history of premature coronary disease.", "3. Coronary artery disease.")
    assert rules.stated_in_assessment(cs, own, ["I25.10", "I10"], ["I10"]) == ["I25.10"]


def test_a_symptom_named_only_in_the_plan_is_not_assessed(cs):
    note = ("HPI: productive cough, fever to 102 F and pleuritic chest pain for 4 days.\n"
            "Assessment: Community-acquired pneumonia, right lower lobe.\n"
            "Plan: Amoxicillin-clavulanate. Acetaminophen for fever and chest pain.\n")
    assert rules.unassessed(cs, note, ["J18.9", "R50.9", "R07.9"]) == [
        Rejected(c, rules.NOT_IN_ASSESSMENT) for c in ("R50.9", "R07.9")]
    # Under one heading "Assessment and plan" every line is the assessment.
    combined = note.replace("Plan: ", "")
    assert rules.unassessed(cs, combined, ["J18.9", "R50.9", "R07.9"]) == []


def test_a_code_of_either_part_goes_beside_the_code_that_reports_both(cs):
    # I13: any condition in I11 with any condition in I12; I11.9 "without heart failure" beside
    # I11.0 "with heart failure" and the heart failure I11.0 asks for.
    assert run(cs, "I13.0", "I11.9", "I50.32", "N18.31") == (
        ["I13.0", "I50.32", "N18.31"], {"I11.9": rules.IN_COMBINATION})
    assert run(cs, "I11.0", "I11.9", "I50.22") == (["I11.0", "I50.22"], {"I11.9": rules.IN_COMBINATION})
    assert run(cs, "I11.9", "I50.22") == (["I11.0", "I50.22"], {"I11.9": rules.IN_COMBINATION})
    assert run(cs, "I11.9", "E78.5") == (["I11.9", "E78.5"], {})


@pytest.mark.parametrize("generic, specific", [
    ("F17.200", "F17.210"),  # nicotine dependence, unspecified / cigarettes
    ("J45.909", "J45.20"),   # unspecified asthma / mild intermittent asthma
    ("I48.91", "I48.21"),    # unspecified / permanent atrial fibrillation
])
def test_an_unspecified_code_gives_way_to_a_code_of_another_subcategory_that_says_more(cs, generic, specific):
    assert run(cs, generic, specific) == ([specific], {generic: rules.LESS_SPECIFIC})
    # Not to a residual "Other ..." code, nor to another condition of the category.
    assert run(cs, "J45.909", "J45.998") == (["J45.909", "J45.998"], {})
    assert run(cs, "E87.20", "E87.1") == (["E87.20", "E87.1"], {})


def test_a_code_an_excludes1_note_forbids_beside_a_stated_diagnosis_goes(cs):
    # E11 excludes type 1 diabetes (E10); F32 excludes recurrent depression (F33).
    for other, stated in [("E11.9", "E10.10"), ("F32.9", "F33.1")]:
        applied = rules.apply([(other, 0.9), (stated, 0.5)], cs, established=frozenset({stated}))
        assert [c for c, _ in applied.kept] == [stated]
        assert applied.dropped == [Rejected(other, rules.EXCLUDED)]
        # Neither established (a case report without an assessment): both stay, flagged by the pipeline.
        assert run(cs, other, stated) == ([other, stated], {})
    # Both stated, one only in the other's words: "Iron deficiency anemia" is D50.9, not also E61.1.
    both = frozenset({"D50.9", "E61.1"})
    applied = rules.apply([("D50.9", 0.9), ("E61.1", 0.5)], cs, established=both)
    assert [c for c, _ in applied.kept] == ["D50.9"] and applied.dropped == [Rejected("E61.1", rules.EXCLUDED)]


def test_a_sibling_the_note_does_not_state_goes_beside_the_one_the_assessment_states(cs):
    note = ("Assessment:\n1. Type 2 diabetes mellitus with diabetic nephropathy, chronic kidney disease "
            "stage 4.\n2. Major depressive disorder, recurrent, moderate.\n")
    # N18.2: the 2 of "Type 2" is no stage 2. E11.21 and E11.22 are both stated: both stay.
    assert rules.alternative_stated(cs, note, ["E11.21", "E11.22", "N18.4", "N18.2", "F33.1", "F33.0"]) == [
        Rejected("N18.2", rules.OTHER_STATED), Rejected("F33.0", rules.OTHER_STATED)]
    # An "unspecified" sibling is left to less_specific; a case report without an assessment to the model.
    assert rules.alternative_stated(cs, note, ["N18.4", "N18.9"]) == []
    assert rules.alternative_stated(cs, note.replace("Assessment:\n", ""), ["N18.4", "N18.2"]) == []


def test_a_probable_diagnosis_in_a_clinic_note_is_not_coded_its_symptom_is(cs):
    note = ("ED note.\nHPI: pressing headache since this afternoon.\n"
            "Assessment: Headache, probable tension-type headache.\nPlan: ibuprofen.\n")
    result = fixed_pipeline(cs, [("G44.209", 0.8), ("R51.9", 0.6)]).suggest(note)
    assert result.codes == ["R51.9"]
    assert ("G44.209", rules.UNCERTAIN) in [(r.raw, r.reason) for r in result.rejected]
    # Stated without the qualifier, it is coded (and the headache is part of it).
    certain = fixed_pipeline(cs, [("G44.209", 0.8), ("R51.9", 0.6)]).suggest(note.replace("probable ", ""))
    assert "G44.209" in certain.codes and "R51.9" not in certain.codes
    # A hospital's discharge diagnoses code it as if established (guidelines, Section II.H).
    discharge = note.replace("Assessment:", "Discharge diagnoses:")
    assert "G44.209" in fixed_pipeline(cs, [("G44.209", 0.8)]).suggest(discharge).codes


def test_a_residual_code_counts_only_through_its_own_terms(cs):
    # "Other constipation" says what K59.00 says; "Chronic constipation" is K59.09's inclusion term.
    note = "Assessment:\n1. Chronic constipation.\n"
    assert rules.specific_in_assessment(cs, note, ["K59.00"]) == {"K59.00": "K59.09"}
    assert rules.specific_in_assessment(cs, "Assessment:\n1. Constipation.\n", ["K59.00"]) == {}
    # Nor does a residual code displace the generic one by itself ("Other hyperlipidemia").
    assert run(cs, "E78.5", "E78.49") == (["E78.5", "E78.49"], {})


def test_the_parents_title_with_the_codes_side_states_it(cs):
    note = "Impression: Moderate carpal tunnel syndrome, right.\nPlan: night splint.\n"
    assert rules.stated_in_assessment(cs, note, ["G56.00", "G56.02", "G56.01"], []) == ["G56.01"]
    assert rules.stated_in_assessment(cs, note.replace("right", "left"), ["G56.01", "G56.02"], []) == ["G56.02"]


def test_alternatives_are_the_children_of_a_condition_not_of_a_residual_title(cs):
    note = "Assessment:\n1. Hypertensive heart and kidney disease.\n2. CKD stage 3a.\n3. Metabolic alkalosis.\n"
    # N18.2 sits under N18 beside N18.3, the stage 3a's parent; E87 "Other disorders of fluid,
    # electrolyte and acid-base balance" holds unrelated conditions: hyponatremia stays.
    assert rules.alternative_stated(cs, note, ["N18.31", "N18.2", "E87.3", "E87.1"]) == [
        Rejected("N18.2", rules.OTHER_STATED)]


def test_a_heart_and_kidney_note_is_coded_with_the_stage_and_the_combination_it_states(cs):
    note = ("HPI: long-standing hypertension, chronic kidney disease and heart failure.\n"
            "Assessment:\n1. Hypertensive heart and kidney disease.\n"
            "2. Chronic diastolic heart failure, compensated, NYHA II.\n3. CKD stage 3a.\n"
            "Plan: Increase torsemide. Return for chest pain or dizziness.\n")
    chosen = [("N18.9", 0.8), ("I50.32", 0.5), ("I10", 0.7), ("I11.9", 0.6), ("N18.2", 0.3), ("R42", 0.4)]
    result = fixed_pipeline(cs, chosen).suggest(note)
    # N18.9 gives way to the stage 3a the assessment states, and then N18.2 to it; I13.0 reports
    # the hypertension and I11.9; the dizziness is only in the plan.
    assert sorted(result.codes) == ["I13.0", "I50.32", "N18.31"]
    reasons = {r.raw: r.reason for r in result.rejected}
    assert reasons["N18.2"] == rules.OTHER_STATED and reasons["I11.9"] == rules.IN_COMBINATION
    # What the patient is to come back for has not happened ("Return for chest pain or dizziness"):
    # no affirmed word of the note says it ("dizziness" names R42 "Dizziness and giddiness" alone,
    # so it reads as the plan's unaffirmed mention, as "chest pain" does for R07.9).
    assert reasons["R42"] in (rules.NO_EVIDENCE, "negated")


def test_a_code_stated_through_its_parents_title_has_those_words_as_evidence(cs):
    note = "Impression: Moderate carpal tunnel syndrome, right.\nPlan: night splint.\n"
    result = fixed_pipeline(cs, [("G56.01", 0.7)]).suggest(note)
    s = result.suggestions[0]
    assert s.evidence is not None and s.evidence.text.lower().startswith("carpal tunnel syndrome")
    assert "unsupported" not in s.flags  # the app would say "no evidence found"


@pytest.mark.parametrize("assessment, pool, stated", [
    ("Crohn disease of small intestine.", ["K50.00", "K50.90"], ["K50.00"]),
    ("Meniere disease of the left ear.", ["H81.02", "H81.09"], ["H81.02"]),
    # (Not an eponym: a "midshaft" fracture is the code set's "fracture of shaft".)
    ("Closed displaced left midshaft clavicle fracture, initial encounter.",
     ["S42.022A", "S42.002A", "S42.025A"], ["S42.022A"]),
])
def test_the_assessment_states_an_eponym_without_its_possessive_or_accents(cs, assessment, pool, stated):
    assert rules.stated_in_assessment(cs, f"Assessment: {assessment}\nPlan: follow up.\n", pool, []) == stated


def test_an_injury_stated_without_its_encounter_has_those_words_as_evidence(cs):
    """"Heat exhaustion" is T67.5XXA "Heat exhaustion, unspecified, initial encounter": the 7th
    character is the retriever's choice (models/seventh.py), not words the note must say, so the
    code has evidence and an encounter note keeps it."""
    note = ("Urgent care visit.\nHPI: roofer dizzy and sweating after 6 hours in the heat today.\n"
            "Assessment: Heat exhaustion.\nPlan: IV fluids, rest.\n")
    assert "Heat exhaustion, unspecified" in rules.wordings(cs, "T67.5XXA")
    result = fixed_pipeline(cs, [("T67.5XXA", 0.7)]).suggest(note)
    assert result.codes == ["T67.5XXA"]
    assert result.suggestions[0].evidence.text == "Heat exhaustion"


def test_a_combination_the_assessment_names_reports_its_cause_however_sure(cs):
    """"Hypertensive heart disease" in the assessment: the I11 code reports the hypertension, so
    I10 goes even where the selector was surer of it (the two contradict only where the note does
    not settle it)."""
    note = ("HPI: long-standing hypertension, heart failure with reduced ejection fraction.\n"
            "Assessment:\n1. Chronic systolic heart failure.\n2. Hypertensive heart disease.\n")
    result = fixed_pipeline(cs, [("I10", 0.9), ("I50.22", 0.8), ("I11.0", 0.4)]).suggest(note)
    assert sorted(result.codes) == ["I11.0", "I50.22"]
    assert ("I10", rules.IN_COMBINATION) in [(r.raw, r.reason) for r in result.rejected]
    # Without that title, hypertension beside heart failure is still I11.0 (the guidelines presume
    # the link): the less sure I11.0 the selector chose reports I10 as the one the rules would add.
    plain = note.replace("Hypertensive heart disease", "Hypertension")
    for selected in ([("I10", 0.9), ("I50.22", 0.8), ("I11.0", 0.4)], [("I10", 0.9), ("I50.22", 0.8)]):
        result = fixed_pipeline(cs, selected).suggest(plain)
        assert sorted(result.codes) == ["I11.0", "I50.22"]
        assert ("I10", rules.IN_COMBINATION) in [(r.raw, r.reason) for r in result.rejected]
    # Where the codes beside do not ask for that combination, the surer I10 stays, flagged.
    result = fixed_pipeline(cs, [("I10", 0.9), ("I11.0", 0.4)]).suggest(plain.replace(
        "Chronic systolic heart failure", "Chronic low back pain"))
    by_code = {s.code: s for s in result.suggestions}
    assert {"I10", "I11.0"} <= set(by_code) and by_code["I10"].more_specific == ["I11.0"]


def test_a_guess_of_a_category_gives_way_to_the_sibling_the_assessment_states(cs):
    """The selector chose N40.0 "... without lower urinary tract symptoms" where the assessment
    says "with": the stated N40.1 comes in and N40.0 goes, though the exam's "enlarged prostate"
    is one of N40.0's wordings (it says "without" what N40.1 has)."""
    note = ("Exam: Enlarged prostate, smooth, nontender.\n"
            "Assessment: Benign prostatic hyperplasia with lower urinary tract symptoms: nocturia and weak stream.\n"
            "Plan: Start tamsulosin 0.4 mg at bedtime.\n")
    assert rules.stated_in_assessment(cs, note, ["N40.0", "N40.1"], ["N40.0"]) == ["N40.1"]
    assert rules.alternative_stated(cs, note, ["N40.0", "N40.1"]) == [Rejected("N40.0", rules.OTHER_STATED)]
    result = fixed_pipeline(cs, [("N40.0", 0.6)]).suggest(note)
    assert "N40.1" in result.codes and "N40.0" not in result.codes
    # A code the assessment states keeps its category: nothing else of it comes in.
    assert rules.stated_in_assessment(cs, note, ["N40.0", "N40.1", "N40.3"], ["N40.1"]) == []


def test_a_qualifier_after_a_comma_states_the_code_that_names_it(cs):
    note = "Assessment: Type 1 diabetes mellitus with diabetic ketoacidosis, moderate, without coma.\n"
    assert rules.specific_in_assessment(cs, note, ["E10.9"]) == {"E10.9": "E10.10"}


def test_a_diagnosis_the_assessment_leaves_out_goes_in_a_clinic_note(cs):
    """L53.9 "Erythematous condition, unspecified" from the exam's erythema beside the cellulitis
    the assessment names: a coder reports the cellulitis. A case report keeps it."""
    exam = "Exam: 12 x 9 cm area of warm, tender erythema of the left shin.\n"
    note = exam + "Assessment:\n1. Cellulitis of the left lower leg, nonpurulent.\nPlan: cephalexin.\n"
    assert rules.unassessed(cs, note, ["L03.116", "L53.9"]) == [
        Rejected("L53.9", rules.DIAGNOSIS_NOT_IN_ASSESSMENT)]
    result = fixed_pipeline(cs, [("L03.116", 0.7), ("L53.9", 0.6)]).suggest(note)
    assert result.codes == ["L03.116"]
    # Named in the assessment, it stays. Any other diagnosis it leaves out goes too, "unspecified"
    # or not: a scar from the history beside the cellulitis.
    assert rules.unassessed(cs, note.replace("nonpurulent", "with erythema"), ["L03.116", "L53.9"]) == []
    assert rules.unassessed(cs, "HPI: scar on the shin from an old burn.\n" + note, ["L03.116", "L90.5"]) == [
        Rejected("L90.5", rules.DIAGNOSIS_NOT_IN_ASSESSMENT)]
    # An organism a named infection asks for stays ("Use additional code (B95-B97)").
    uti = "HPI: dysuria.\nAssessment: Urinary tract infection due to E. coli.\nPlan: nitrofurantoin.\n"
    assert rules.unassessed(cs, uti, ["N39.0", "B96.20"]) == []
    # Stated across the commas of one item, it is named: "Alcohol use disorder, moderate, in early
    # remission" is an inclusion term of F10.21.
    aud = "HPI: sober 6 months.\nAssessment: Alcohol use disorder, moderate, in early remission.\n"
    assert rules.unassessed(cs, aud, ["F10.21"]) == []
    # A case report's "Diagnosis:" heading lists what it details elsewhere: nothing goes.
    report = exam + "Diagnosis: cellulitis of the left lower leg.\n"
    assert rules.unassessed(cs, report, ["L03.116", "L53.9"]) == []


def test_a_qualifier_alone_does_not_name_a_symptom_in_the_assessment(cs):
    """"Acute otitis externa" shares only "acute" with R52's "Acute pain NOS": the ear pain of
    the history is the otitis', and R52 goes."""
    note = "HPI: 3 days of left ear pain.\nAssessment: Acute otitis externa (swimmer's ear), left ear.\n"
    assert rules.unassessed(cs, note, ["H60.332", "R52"]) == [Rejected("R52", rules.NOT_IN_ASSESSMENT)]
    # "Chronic pain" in the assessment names it.
    assert rules.unassessed(cs, note.replace("left ear.", "left ear. Chronic pain syndrome."), ["H60.332", "R52"]) == []


def test_a_title_of_its_chapters_words_alone_is_named_by_all_of_them(cs):
    """J98.8 "Other specified respiratory disorders" names its condition only by its chapter's
    word: "respiratory syncytial virus" or a preceding "viral upper respiratory infection" in the
    assessment names no respiratory disorder, and it goes beside the diagnosis there."""
    note = ("HPI: 2 days of cough and wheeze in a 4-month-old.\nAssessment: Acute bronchiolitis due to "
            "respiratory syncytial virus, mild to moderate.\nPlan: nasal suctioning.\n")
    assert rules.unassessed(cs, note, ["J21.0", "J98.8"]) == [Rejected("J98.8", rules.DIAGNOSIS_NOT_IN_ASSESSMENT)]
    sinusitis = ("HPI: facial pain for 12 days.\nAssessment: Acute bacterial maxillary sinusitis (double "
                 "worsening after a viral upper respiratory infection).\n")
    assert rules.unassessed(cs, sinusitis, ["J01.00", "J98.8"]) == [
        Rejected("J98.8", rules.DIAGNOSIS_NOT_IN_ASSESSMENT)]
    # Such a title of two words or more is named by all of them (D75.89 "Other specified diseases
    # of blood and blood-forming organs").
    blood = note.replace("mild to moderate.", "mild.\n2. Specified diseases of blood and blood-forming organs.")
    assert rules.unassessed(cs, blood, ["J21.0", "D75.89"]) == []


def test_one_word_and_uncomplicated_state_the_without_complications_code(cs):
    """"Herpes zoster ..., uncomplicated" states B02.9 "Zoster without complications": one word
    of the condition, and the note says "without complications" as the code does."""
    note = "Assessment: Herpes zoster of the right T6 dermatome, uncomplicated.\nPlan: valacyclovir.\n"
    assert rules.stated_in_assessment(cs, note, ["L53.9", "B02.9"], []) == ["B02.9"]
    # Without "uncomplicated", a lone "zoster" states nothing (B02.29 "Other postherpetic nervous
    # system involvement" holds it too).
    assert rules.stated_in_assessment(cs, note.replace(", uncomplicated", ""), ["L53.9", "B02.9"], []) == []


def test_an_assessment_item_of_one_word_states_its_code(cs):
    """"3. Hyperlipidemia." and "Hyperlipidemia, at goal" state E78.5 "Hyperlipidemia,
    unspecified": the item says the condition and how it is doing, nothing a more specific code
    would need. An item that says more states the code of what it says."""
    pool = ["E78.5", "E78.2", "E78.49"]
    for item in ("3. Hyperlipidemia.", "4. Hyperlipidemia, at goal.", "Hyperlipidemia, stable."):
        note = f"PMH: high cholesterol.\nAssessment:\n1. Essential hypertension.\n{item}\nPlan: statin.\n"
        assert rules.stated_in_assessment(cs, note, pool, ["I10"]) == ["E78.5"], item
    mixed = "Assessment:\n1. Mixed hyperlipidemia.\nPlan: statin.\n"
    assert rules.stated_in_assessment(cs, mixed, pool, []) == ["E78.2"]
    # The word inside a longer diagnosis, or named only in the history: nothing.
    assert rules.stated_in_assessment(cs, "Assessment:\n1. Hyperlipidemia due to hypothyroidism.\n", pool, []) == []
    assert rules.stated_in_assessment(cs, "PMH: hyperlipidemia.\nAssessment:\n1. Gout.\n", pool, []) == []


def test_a_slashed_pair_of_a_code_is_either_word(cs):
    """K64.1's "Grade/stage II hemorrhoids" says grade II or stage II: "Grade II internal
    hemorrhoids" states it, and it displaces the guesses of its category."""
    note = "Anoscopy: internal hemorrhoids.\nAssessment:\n1. Grade II internal hemorrhoids with bleeding.\n"
    assert rules.stated_in_assessment(cs, note, ["K64.8", "K64.9", "K64.1"], []) == ["K64.1"]
    assert rules.stated_in_assessment(cs, note.replace("Grade", "Stage"), ["K64.8", "K64.9", "K64.1"], []) == ["K64.1"]
    result = fixed_pipeline(cs, [("K64.8", 0.4), ("K64.9", 0.3)]).suggest(note)
    assert result.codes == ["K64.1"]


@pytest.mark.parametrize("note, added", [
    ("Assessment: Permanent atrial fibrillation. Continue apixaban long term and metoprolol.", {"Z79.01": "apixaban"}),
    ("Assessment: 5. Long-term aspirin and clopidogrel.", {"Z79.82": "aspirin", "Z79.02": "clopidogrel"}),
    ("Assessment: 4. Long-term antiplatelet therapy for secondary prevention.", {"Z79.02": "antiplatelet"}),
    ("On chronic anticoagulation with warfarin for a mechanical valve.", {"Z79.01": "anticoagulation"}),
    ("Takes apixaban 5 mg twice daily.", {}),                              # not said to be long term
    ("Long-term warfarin was discontinued after the bleed.", {}),          # stopped
    ("Long-term insulin glargine 20 units nightly.", {}),                  # only where diabetes asks
    ("Plan: consider long-term anticoagulation if AF recurs.", {}),         # only planned
    # A current drug the plan continues is ongoing therapy, by whichever of its names.
    ("HPI: on low-dose inhaled budesonide.\nPlan: continue budesonide.", {"Z79.51": "budesonide"}),
    ("HPI: uses fluticasone-salmeterol twice daily.\nPlan: Continue fluticasone-salmeterol.",
     {"Z79.51": "fluticasone-salmeterol"}),
    ("HPI: fluticasone nasal spray daily.\nPlan: continue fluticasone.", {}),   # not inhaled
    ("HPI: on apixaban.\nPlan: continue apixaban for 3 more days, then stop.", {}),  # a set time
    ("HPI: on apixaban after the embolism.\nPlan: Continue apixaban for 3 months total.", {"Z79.01": "apixaban"}),
    # Systemic steroids and antimetabolites, by mouth or by vein, not a short course nor a cream.
    ("Assessment: Polymyalgia rheumatica, improving on long-term prednisone.", {"Z79.52": "prednisone"}),
    ("HPI: on methotrexate 15 mg weekly.\nPlan: Continue methotrexate and folic acid.", {"Z79.631": "methotrexate"}),
    ("HPI: on prednisone 40 mg.\nPlan: continue prednisone to complete 5 days.", {}),
    ("HPI: COPD flare on prednisone.\nPlan: Continue prednisone for 2 more days.", {}),
    ("HPI: uses hydrocortisone cream.\nPlan: continue hydrocortisone cream.", {}),
    ("Plan: start prednisone 15 mg daily.", {}),
    # A change to another drug of the class: the class's therapy goes on.
    ("HPI: on fluticasone-salmeterol 250/50 twice daily.\nPlan: Step up to budesonide-formoterol.",
     {"Z79.51": "fluticasone-salmeterol"}),
    ("HPI: takes warfarin.\nPlan: switch from warfarin to apixaban.", {"Z79.01": "warfarin"}),
    ("HPI: on aspirin 81 mg.\nPlan: change to clopidogrel.", {}),              # another class
    ("HPI: no anticoagulant.\nPlan: switch to apixaban if AF recurs.", {}),      # none taken now
])
def test_a_drug_the_note_says_is_taken_long_term_gets_its_z79_code(cs, note, added):
    """A coder codes the long-term use of an anticoagulant (Z79.01), antiplatelet (Z79.02),
    aspirin (Z79.82), systemic steroid (Z79.52) or antimetabolite (Z79.631) wherever the note
    says the patient takes it long term, whether or not a diagnosis asks for it; the drug's name
    is the evidence."""
    found = rules.long_term_therapy(cs, note, [])
    assert {code: note[a:b] for code, (a, b) in found.items()} == added
    assert rules.long_term_therapy(cs, note, list(added)) == {}  # already suggested


@pytest.mark.parametrize("item, pool, stated", [
    # One of the things a wording says is absent, negated in the note's own words.
    ("Acute suppurative otitis media, right ear, without rupture of the eardrum.",
     ["H66.90", "H66.001", "H66.011"], ["H66.001"]),
    # "Uncomplicated" says the perforation, the abscess and the bleeding are absent.
    ("Acute uncomplicated sigmoid diverticulitis.", ["K57.92", "K57.32", "K57.20", "K57.33"], ["K57.32"]),
    # ... but not where the note says one of them is present, nor a wording's own "without
    # complications" ("... without complications in remission") for the note's.
    ("Sigmoid diverticulitis without perforation, with abscess.", ["K57.32"], []),
    ("Type 2 diabetes mellitus without complications.", ["E11.A", "E11.9"], ["E11.9"]),
    # An "Other ..." title stated where no other code of its category says its words.
    ("Seasonal allergic rhinitis.", ["J30.9", "J30.2", "J30.1"], ["J30.2"]),
    ("Hyperlipidemia, at goal.", ["E78.49"], []),
])
def test_the_assessment_states_a_code_in_fewer_words_than_its_title(cs, item, pool, stated):
    assert rules.stated_in_assessment(cs, f"Assessment: {item}\nPlan: follow up.\n", pool, []) == stated


def test_in_an_encounter_note_a_residual_code_goes_beside_any_code_of_its_category(cs):
    """E78.49 "Other hyperlipidemia" beside E78.5 for "Hyperlipidemia, stable on atorvastatin":
    an office note's assessment names each condition once. A case report keeps both."""
    note = "Assessment:\n1. Hyperlipidemia, stable on atorvastatin.\n2. Hypothyroidism, well replaced.\n"
    assert rules.alternative_stated(cs, note, ["E78.5", "E78.49", "E03.9", "E03.8"]) == [
        Rejected("E78.49", rules.OTHER_STATED), Rejected("E03.8", rules.OTHER_STATED)]
    report = "A 60-year-old man with hyperlipidemia and hypothyroidism on treatment."
    assert rules.alternative_stated(cs, report, ["E78.5", "E78.49", "E03.9", "E03.8"]) == []


def test_a_residual_other_code_goes_beside_the_code_of_its_category_the_assessment_states(cs):
    """F41.8 "Other specified anxiety disorders" beside the "Generalized anxiety disorder" the
    assessment states: the physician named which anxiety disorder. A residual code the note
    states stays, and so does one beside nothing stated."""
    note = "Assessment:\n1. Major depressive disorder, recurrent episode, moderate.\n2. Generalized anxiety disorder.\n"
    assert rules.alternative_stated(cs, note, ["F33.1", "F41.1", "F41.8"]) == [Rejected("F41.8", rules.OTHER_STATED)]
    assert rules.alternative_stated(cs, note.replace("Generalized anxiety disorder", "Anxiety"),
                                    ["F33.1", "F41.8"]) == []
    # "..., other site" is a site, not another condition: M89.78 is what the note says.
    osseous = "Assessment:\n1. Major osseous defect, other site.\n"
    assert rules.alternative_stated(cs, osseous, ["M89.70", "M89.78"]) == []


def test_a_code_of_the_other_course_than_the_note_says_is_contradicted(cs):
    """J32.0 "Chronic maxillary sinusitis" where the note says "Acute bacterial maxillary
    sinusitis" and never "chronic"; a note that also says chronic keeps it."""
    note = "HPI: 12 days of congestion.\nAssessment: Acute bacterial maxillary sinusitis.\n"
    assert rules.contradicted(cs, note, ["J01.00", "J32.0"]) == [Rejected("J32.0", rules.CONTRADICTED)]
    both = note.replace("HPI: 12 days of congestion.", "PMH: chronic maxillary sinusitis.")
    assert rules.contradicted(cs, both, ["J01.00", "J32.0"]) == []
    # An acute code where the note says "chronic" of the same condition, likewise.
    assert rules.contradicted(cs, "Assessment: Chronic maxillary sinusitis.\n", ["J01.00", "J32.0"]) == [
        Rejected("J01.00", rules.CONTRADICTED)]


def test_a_code_that_says_absent_what_another_says_is_not_its_more_specific_code(cs):
    """R11.0 "Nausea" holds "Nausea without vomiting": beside R11.2 "Nausea with vomiting,
    unspecified" it is the alternative, not the detail, and R11.2 stays for the note that says
    "nausea with vomiting". A word the wording also says is not absent ("Retinal detachment
    without retinal break" still says the retina, so H33.22 reports H33.20)."""
    assert not rules._more_specific(cs, "R11.0", "R11.2")
    kept, dropped, *_ = rules.apply([("R11.0", 0.6), ("R11.2", 0.4)], cs)
    assert [c for c, _ in kept] == ["R11.0", "R11.2"] and dropped == []
    assert rules._more_specific(cs, "H33.22", "H33.20")


def test_an_injury_of_unspecified_body_region_goes_beside_the_injury_the_note_names(cs):
    """T14.8XXA "Other injury of unspecified body region, initial encounter" says an injury and
    that its place is unknown: the Colles' fracture (S52.532A) reports it with its place."""
    assert run(cs, "S52.532A", "T14.8XXA") == (["S52.532A"], {"T14.8XXA": rules.LESS_SPECIFIC})
    # "Neoplasm of unspecified behavior of bladder" names a place; the behaviour is what it leaves open.
    assert not rules._more_specific(cs, "C67.9", "D49.4")


def test_a_nos_wording_states_its_code_only_where_the_note_says_no_more(cs):
    """F32.9's inclusion term "Major depression NOS" is not what "Major depressive disorder,
    recurrent episode, moderate" says: the recurrence is F33.1's, and F32 excludes F33."""
    note = "Assessment:\n1. Major depressive disorder, recurrent episode, moderate.\n2. Generalized anxiety disorder.\n"
    assert rules.established_in_assessment(cs, note, ["F32.9", "F33.1", "F41.1"]) == {"F33.1", "F41.1"}
    kept, dropped, *_ = rules.apply([("F32.9", 0.6), ("F33.1", 0.4), ("F41.1", 0.5)], cs,
                                    rules.established_in_assessment(cs, note, ["F32.9", "F33.1", "F41.1"]))
    assert Rejected("F32.9", rules.EXCLUDED) in dropped
    # The item that says just that, or a note that writes "NOS" itself, states it.
    assert rules.established_in_assessment(cs, "Assessment:\n1. Major depression.\n", ["F32.9"]) == {"F32.9"}
    assert rules.established_in_assessment(cs, "Assessment:\n1. Major depression NOS - follow up.\n",
                                           ["F32.9"]) == {"F32.9"}


def test_a_code_whose_wording_says_absent_what_the_note_says_is_contradicted(cs):
    """R11.0 "Nausea" holds "Nausea without vomiting": a note that says "nausea with vomiting"
    contradicts it (R11.2 is the code); "Migraine with aura" contradicts G43.009's "without aura".
    A note that denies the vomiting keeps R11.0."""
    note = "Assessment: Nausea with vomiting and diarrhea.\n"
    assert rules.contradicted(cs, note, ["R11.0", "R11.2", "R19.7"]) == [Rejected("R11.0", rules.CONTRADICTED)]
    assert rules.contradicted(cs, "Assessment: Migraine with aura.\n", ["G43.009", "G43.109"]) == [
        Rejected("G43.009", rules.CONTRADICTED)]
    assert rules.contradicted(cs, "Assessment: Nausea, no vomiting.\n", ["R11.0"]) == []


@pytest.mark.parametrize("note, added", [
    ("Exam: Weight 118 kg, BMI 37.4.\nAssessment: Class 2 obesity.", {"Z68.37": "BMI 37.4"}),
    ("61-year-old man. Body mass index of 31 today.", {"Z68.31": "Body mass index of 31"}),
    ("BMI: 45.0", {"Z68.42": "BMI: 45.0"}),                   # the lower end of 45.0-49.9
    ("BMI 19.5, recent weight loss.", {"Z68.1": "BMI 19.5"}),
    ("14-year-old girl, BMI 31.", {}),                         # a child's code is by percentile
    ("Obesity; weight 118 kg.", {}),                           # no value written
])
def test_the_bmi_a_code_asks_for_is_coded_from_the_value_the_note_records(cs, note, added):
    """E66's "Use additional code to identify body mass index (BMI), if known" asks for the Z68
    code of the value the note writes, by the ranges of the Z68 titles; the value is the evidence."""
    found = rules.body_mass_index(cs, note, ["E66.812"])
    assert {code: note[a:b] for code, ((a, b), _) in found.items()} == added
    assert all(asking == ["E66.812"] for _, asking in found.values())
    assert rules.body_mass_index(cs, note, ["I10"]) == {}          # nothing asks for it
    assert rules.body_mass_index(cs, note, ["E66.812", *added]) == {}  # already suggested


@pytest.mark.parametrize("assessment, code", [
    ("Concussion without loss of consciousness.", "S06.0X0A"),   # the 7th character's words unsaid
    ("Panic disorder without agoraphobia.", "F41.0"),          # "[episodic paroxysmal anxiety]" a synonym
    ("Acute deep vein thrombosis of the left femoral vein.", "I82.412"),  # "embolism and thrombosis"
    ("Mild to moderate dehydration.", "E86.0"),                 # how bad is no other condition
    ("Croup, mild.", "J05.0"),                                  # "Acute obstructive laryngitis [croup]"
    ("De Quervain tenosynovitis, right wrist.", "M65.4"),       # "Radial styloid tenosynovitis [de Quervain]"
    ("Elevated PSA.", "R97.20"),                                # "... prostate specific antigen [PSA]"
    ("Acute urticaria, trigger unknown.", "L50.9"),             # L50 has no acute code; the cause unknown
    ("Acute lumbar muscle strain, initial visit.", "S39.012A"),  # "muscle, fascia and tendon of lower back"
])
def test_the_assessment_states_a_code_in_the_words_a_clinician_writes(cs, assessment, code):
    note = f"Emergency department note.\nHPI: seen today.\nAssessment: {assessment}\nPlan: home.\n"
    assert rules.stated_in_assessment(cs, note, [code], []) == [code]


@pytest.mark.parametrize("assessment, stated, guess", [
    ("Viral gastroenteritis.", "A08.4", "K52.9"),      # "Noninfective gastroenteritis"
    ("Hyponatremia, mild.", "E87.1", "E87.8"),          # "Electrolyte imbalance NOS"
    ("COVID-19, mild illness.", "U07.1", "R69"),        # "Illness, unspecified" in the COVID-19 item
])
def test_a_second_guess_at_an_item_the_assessment_states_goes(cs, assessment, stated, guess):
    note = f"Urgent care visit.\nHPI: 2 days.\nAssessment: {assessment}\nPlan: supportive care.\n"
    assert rules.alternative_stated(cs, note, [stated, guess]) == [Rejected(guess, rules.OTHER_STATED)]
    # In a case report, where both are often coded, it stays.
    assert rules.alternative_stated(cs, f"The patient had {assessment.lower()}", [stated, guess]) == []


def test_a_guess_without_evidence_takes_no_stated_symptom_with_it(cs):
    """Prediabetes is its own assessment item: a guessed E11.9 (similar cases), whose words the
    note never says, must not take it away as integral to diabetes."""
    note = ("Primary care visit.\nHPI: follow-up of weight and blood sugar.\nLabs: A1c 6.1%.\n"
            "Assessment/Plan:\n1. Prediabetes. Lifestyle changes.\n2. Obesity, class 1, BMI 32.4.\n")
    result = fixed_pipeline(cs, [("E11.9", 0.9), ("E66.811", 0.8), ("R73.03", 0.4)]).suggest(note)
    assert sorted(result.codes) == ["E66.811", "R73.03", "Z68.32"]
    assert ("E11.9", rules.NO_EVIDENCE) in [(r.raw, r.reason) for r in result.rejected]


def test_long_term_bisphosphonate_therapy_is_coded(cs):
    note = ("Assessment: Postmenopausal osteoporosis without fracture. Continue alendronate. "
            "Long-term bisphosphonate therapy, precautions reviewed.\n")
    assert list(rules.long_term_therapy(cs, note, ["M81.0"])) == ["Z79.83"]
    assert rules.long_term_therapy(cs, "Assessment: Osteoporosis. Start alendronate.\n", ["M81.0"]) == {}


def test_a_qualifier_the_category_codes_keeps_the_unspecified_code_unstated(cs):
    """"Acute" says nothing more about urticaria, but "chronic" is L50.8's ("Chronic urticaria")."""
    note = "Urgent care visit.\nHPI: hives.\nAssessment: {}\nPlan: cetirizine.\n"
    assert rules.stated_in_assessment(cs, note.format("Acute urticaria."), ["L50.9"], []) == ["L50.9"]
    assert rules.stated_in_assessment(cs, note.format("Chronic urticaria."), ["L50.9"], []) == []


def test_a_symptom_the_assessment_concludes_with_displaces_the_rest(cs):
    """No diagnosis found: the symptom the assessment states is coded, not the nausea of the
    history, the tenderness-free generic pain codes, nor the unspecified sibling."""
    note = ("Emergency department note.\nHPI: right lower abdominal pain for 12 hours, nausea once.\n"
            "Assessment: Right lower quadrant abdominal pain; appendicitis ruled out.\nPlan: ibuprofen.\n")
    result = fixed_pipeline(cs, [("R11.0", 0.6), ("R10.30", 0.5), ("R52", 0.45), ("R10.31", 0.4)]).suggest(note)
    assert result.codes == ["R10.31"]
    assert ("R11.0", rules.NOT_IN_ASSESSMENT) in [(r.raw, r.reason) for r in result.rejected]


def test_a_pain_is_named_in_the_assessment_only_where_it_says_pain(cs):
    """"De Quervain tenosynovitis, right wrist" names the wrist, not M25.531 "Pain in right
    wrist"; "Acute lumbar muscle strain" not M54.9's "Back pain NOS"."""
    note = "Hand clinic.\nHPI: wrist pain for 6 weeks.\nAssessment: De Quervain tenosynovitis, right wrist.\n"
    assert rules.unassessed(cs, note, ["M65.4", "M25.531"]) == [Rejected("M25.531", rules.NOT_IN_ASSESSMENT)]
    back = "Urgent care.\nHPI: back pain after lifting.\nAssessment: Acute lumbar muscle strain.\n"
    assert rules.unassessed(cs, back, ["S39.012A", "M54.9"]) == [
        Rejected("M54.9", rules.DIAGNOSIS_NOT_IN_ASSESSMENT)]


def test_the_code_that_states_more_of_an_item_takes_its_place(cs):
    """B08.8's inclusion term "Foot-and-mouth disease" is a part of B08.4's "Hand, foot and
    mouth disease", which the assessment states: B08.4 comes in, B08.8 goes."""
    note = "Pediatric sick visit.\nHPI: fever and sores.\nAssessment: Hand, foot and mouth disease.\nPlan: fluids.\n"
    assert rules.stated_in_assessment(cs, note, ["B08.8", "B08.4"], ["B08.8"]) == ["B08.4"]
    assert rules.alternative_stated(cs, note, ["B08.8", "B08.4"]) == [Rejected("B08.8", rules.OTHER_STATED)]


@pytest.mark.parametrize("plan, added", [
    ("Vaccines given today: DTaP, IPV, MMR and varicella.", True),
    ("Influenza vaccine administered in clinic.", True),
    ("Pneumococcal vaccine up to date.", False),
    ("Declined the flu shot; offered again next visit.", False),
    ("Tdap booster due next year.", False),
    ("Tdap given today.", True),  # a vaccine by its name
    ("Shingrix dose 1 administered.", True),
])
def test_a_vaccine_given_at_the_visit_is_coded_z23(cs, plan, added):
    note = f"Well-child visit.\nHPI: here for a check-up.\nAssessment: Healthy child.\nPlan: {plan}\n"
    found = rules.immunization(cs, note, [])
    assert (found == {"Z23": found.get("Z23")} and bool(found)) is added
    if added:
        a, b = found["Z23"]
        assert rules.VACCINE.fullmatch(note[a:b])
    assert rules.immunization(cs, note, ["Z23"]) == {}  # already suggested


@pytest.mark.parametrize("heading, history, assessment, codes, added", [
    ("Well-child visit.", "4-year-old boy.", "Healthy 4-year-old, normal growth.", [], "Z00.129"),
    ("Clinic visit.", "9-year-old girl here for her annual check-up.", "Healthy child. 2. New heart murmur.",
     ["R01.1"], "Z00.121"),
    ("Annual physical.", "54-year-old man.", "1. Hypertension, controlled.", ["I10"], "Z00.00"),
    ("Annual physical.", "54-year-old man.", "1. Newly found hyperlipidemia.", ["E78.5"], "Z00.01"),
    ("Follow-up visit.", "72-year-old woman here to review labs from her annual visit.", "B12 deficiency.",
     ["E53.8"], None),                                                  # another visit's
    ("Well-child visit.", "10-day-old girl.", "Healthy newborn.", [], None),  # a newborn's codes: Z00.11-
])
def test_a_routine_examination_is_coded_with_or_without_abnormal_findings(cs, heading, history, assessment,
                                                                          codes, added):
    note = f"{heading}\nHPI: {history}\nAssessment: {assessment}\nPlan: follow up in a year.\n"
    found = rules.routine_examination(cs, note, codes)
    assert list(found) == ([added] if added else [])
    assert rules.routine_examination(cs, "The patient came for an annual physical.", []) == {}  # no encounter note


def test_a_routine_examination_is_the_visits_conclusion(cs):
    """A well-child note's history and exam ("eating well", "lungs clear") name no condition to code."""
    note = ("Well-child visit.\n4-year-old boy here for his annual check-up. Eating well, sleeping well.\n"
            "Exam: Lungs clear.\nAssessment: Healthy 4-year-old, normal growth and development.\n"
            "Plan: Vaccines given today: DTaP and MMR.\n")
    result = fixed_pipeline(cs, [("F50.9", 0.5), ("J98.4", 0.4)]).suggest(note)
    assert sorted(result.codes) == ["Z00.129", "Z23"]


def test_symptoms_listed_in_one_item_are_no_second_guesses(cs):
    """An item of symptoms ("Nausea with vomiting, and diarrhea") states R11.2: the diarrhea
    beside it is the item's too, not a guess at the vomiting."""
    note = ("Urgent care visit.\nHPI: 1 day of symptoms.\nAssessment: Nausea with vomiting, and diarrhea, "
            "probably viral.\nPlan: fluids.\n")
    assert rules.alternative_stated(cs, note, ["R11.2", "R19.7"]) == []


@pytest.mark.parametrize("selected, combination", [
    # I20 excludes "angina pectoris with atherosclerotic heart disease of native coronary arteries
    # (I25.1-)": the code of I25.1 that says both is the one to report.
    (["I25.10", "I20.89"], "I25.118"),   # stable angina
    (["I25.10", "I20.0"], "I25.110"),    # unstable angina
    (["I20.9", "I25.10"], "I25.119"),    # angina, unspecified: "without angina" becomes "with"
])
def test_two_codes_the_code_set_forbids_together_become_the_code_that_says_both(cs, selected, combination):
    applied = rules.apply([(selected[0], 0.7), (selected[1], 0.6)], cs)
    assert [c for c, _ in applied.kept] == [combination]
    assert {(r.raw, r.reason) for r in applied.dropped} == {(c, rules.IN_COMBINATION) for c in selected}
    assert set(applied.combined[combination]) == set(selected)
    assert dict(applied.kept)[combination] == 0.6
    # Only where the note links them: two findings of a case report stay two codes.
    apart = rules.apply([(selected[0], 0.7), (selected[1], 0.6)], cs, together=lambda a, b: False)
    assert [c for c, _ in apart.kept] == selected


def test_the_pipeline_combines_what_one_sentence_of_the_note_links(cs):
    pipeline = fixed_pipeline(cs, [("I25.10", 0.8), ("I20.89", 0.6)])
    linked = ("Cardiology visit.\nHPI: chest tightness on exertion.\nAssessment: Coronary artery disease "
              "with stable angina.\nPlan: metoprolol.\n")
    result = pipeline.suggest(linked)
    assert result.codes == ["I25.118"]
    assert "disease with stable angina" in result.suggestions[0].evidence.text  # the sentence naming both
    apart = ("A 70-year-old man with coronary artery disease was admitted. Years later he reported "
             "stable angina on exertion.")
    assert sorted(pipeline.suggest(apart).codes) == ["I20.89", "I25.10"]


def test_no_combination_where_no_code_says_more_than_one_of_them(cs):
    # R52 "Pain, unspecified" is excluded beside a pain by site; R07.89 "Other chest pain" says no
    # more than R07.9, and neither says "with".
    assert "R07.89" not in [c for c, _ in rules.apply([("R07.9", 0.6), ("R52", 0.5)], cs).kept]


def test_either_of_two_names_joined_in_a_title_is_evidence_for_the_code(cs):
    assert "hyponatremia" in [w.lower() for w in rules.wordings(cs, "E87.1")]  # "Hypo-osmolality and hyponatremia"
    assert "syncope" in [w.lower() for w in rules.wordings(cs, "R55")]
    # The halves of a shared phrase are not: "Dependence on other enabling machines" is too little.
    assert not any("machines" in w and "devices" not in w for w in rules.wordings(cs, "Z99.89"))
    note = ("Office visit.\nHPI: sodium 126 on labs.\nAssessment: Hyponatremia due to hydrochlorothiazide.\n"
            "Plan: stop it.\n")
    result = fixed_pipeline(cs, [("E87.1", 0.6)]).suggest(note)
    assert result.codes == ["E87.1"] and result.suggestions[0].evidence.text.lower() == "hyponatremia"


def test_a_category_s_other_names_state_its_plain_code(cs):
    # K44 "Diaphragmatic hernia" includes "hiatus hernia"; K44.9 holds "Diaphragmatic hernia NOS".
    note = "GI follow-up.\nHPI: heartburn.\nAssessment: 1. Small hiatal hernia.\nPlan: omeprazole.\n"
    assert rules.stated_in_assessment(cs, note, ["K44.9", "K44.1"], []) == ["K44.9"]
    assert rules._category_names(cs, "K44.1") == []  # with gangrene: not the plain code
    # J10 includes "influenza A (non-novel)": its letter is no key word, so the name is left out,
    # or a plain "Influenza." would state J10.1 (identified virus) beside J11.1.
    flu = "Urgent care visit.\nHPI: fever.\nAssessment: Influenza.\nPlan: fluids.\n"
    assert rules.stated_in_assessment(cs, flu, ["J10.1", "J11.1"], []) == ["J11.1"]
    assert rules.stated_in_assessment(cs, flu.replace("Influenza.", "Influenza B."), ["J10.1", "J11.1"], []) == [
        "J10.1"]


@pytest.mark.parametrize("history, added", [
    ("Former smoker, quit 15 years ago, 10 pack-years.", True),
    ("She quit smoking in 2010.", True),
    ("Ex-smoker.", True),
    ("Never smoker.", False),
    ("Smokes half a pack a day; tried to quit smoking twice.", False),   # smokes now
    ("He was advised to quit smoking.", False),
    ("Quit drinking 5 years ago.", False),
])
def test_a_former_smoker_is_coded_as_a_history_of_nicotine_dependence(cs, history, added):
    note = f"Follow-up visit.\nHPI: 60-year-old man with COPD. {history}\nAssessment: COPD, stable.\nPlan: inhaler.\n"
    found = rules.tobacco_history(cs, note, ["J44.9"])
    assert list(found) == (["Z87.891"] if added else [])
    if added:
        assert rules._FORMER_SMOKER.fullmatch(note[slice(*found["Z87.891"])])
    assert rules.tobacco_history(cs, note, ["J44.9", "F17.210"]) == {}  # a tobacco code already
    assert rules.tobacco_history(cs, f"Case report. {history} COPD was diagnosed.", []) == {}  # no encounter note


@pytest.mark.parametrize("note, codes", [
    ("Prenatal visit.\nHPI: 26-year-old G1P0 at 12 weeks 2 days by dating ultrasound. Mild nausea.\n"
     "Assessment: Intrauterine pregnancy at 12 weeks 2 days, normal first pregnancy.\nPlan: return in 4 weeks.\n",
     {"Z34.01", "Z3A.12"}),
    ("OB visit.\nHPI: 31-year-old G3P2 at 30w1d, feels well, good fetal movement.\n"
     "Assessment: Routine prenatal care, normal pregnancy at 30 weeks.\nPlan: Tdap today.\n",
     {"Z34.83", "Z3A.30"}),
    ("OB visit.\nHPI: 29-year-old G2P1 at 24 weeks of gestation with glucose 190 on the screen.\n"
     "Assessment: Gestational diabetes.\nPlan: diet.\n",
     {"Z3A.24"}),  # not a normal pregnancy: the complication (an O code) is coded, not Z34
    ("Office visit.\nHPI: 40-year-old man with cough for 3 weeks.\nAssessment: Acute bronchitis.\nPlan: fluids.\n",
     set()),
])
def test_a_prenatal_visit_of_a_normal_pregnancy_is_coded_by_trimester_and_weeks(cs, note, codes):
    assert set(rules.prenatal_visit(cs, note, [])) == codes
    # A complicated pregnancy's code already: its weeks still, no supervision of a normal one.
    assert set(rules.prenatal_visit(cs, note, ["O24.410"])) == {c for c in codes if c.startswith("Z3A")}
    assert rules.prenatal_visit(cs, note, ["O24.410", "Z3A.24"]) == {}


def test_a_prenatal_visit_codes_no_symptom_of_a_normal_pregnancy(cs):
    note = ("Prenatal visit.\nHPI: 26-year-old G1P0 at 12 weeks 2 days. Mild morning nausea, improving.\n"
            "Assessment: Intrauterine pregnancy at 12 weeks 2 days, normal first pregnancy.\nPlan: vitamins.\n")
    result = fixed_pipeline(cs, [("R11.0", 0.6)]).suggest(note)
    assert sorted(result.codes) == ["Z34.01", "Z3A.12"]


def test_an_unspecified_code_is_stated_where_the_item_says_nothing_more(cs):
    pool = ["L20.9", "L20.89", "L30.9"]
    flare = "Pediatric visit.\nHPI: itchy skin.\nAssessment: Atopic dermatitis, moderate flare.\nPlan: ointment.\n"
    assert rules.stated_in_assessment(cs, flare, pool, []) == ["L20.9"]
    # Where it says more, that more has a code of its own (L20.82 flexural eczema): not "unspecified".
    more = "Pediatric visit.\nHPI: itchy skin.\nAssessment: Atopic dermatitis of the elbow creases.\nPlan: ointment.\n"
    assert rules.stated_in_assessment(cs, more, pool, []) == []
    # A flare is an exacerbation where the category codes one: "Asthma flare" is no J45.909.
    asthma = "Urgent care visit.\nHPI: wheeze.\nAssessment: Asthma flare.\nPlan: albuterol.\n"
    assert rules.stated_in_assessment(cs, asthma, ["J45.909", "J45.901"], []) == []


def test_the_patients_sex_completes_a_title_that_names_it(cs):
    man = ("Men's health visit.\nHPI: 56-year-old man with trouble keeping an erection.\n"
           "Assessment: Erectile dysfunction.\nPlan: sildenafil.\n")
    assert rules.stated_in_assessment(cs, man, ["N52.9"], []) == ["N52.9"]
    unknown = ("Clinic visit.\nHPI: trouble keeping an erection.\nAssessment: Erectile dysfunction.\n"
               "Plan: sildenafil.\n")
    assert rules.stated_in_assessment(cs, unknown, ["N52.9"], []) == []
    # The sex is no word more: "Hyperlipidemia, at goal." still states E78.5 in her note.
    woman = "Follow-up visit.\nHPI: 60-year-old woman.\nAssessment: Hyperlipidemia, at goal.\nPlan: statin.\n"
    assert rules.stated_in_assessment(cs, woman, ["E78.5"], []) == ["E78.5"]


def test_a_with_complication_code_goes_where_the_assessment_names_the_condition_alone(cs):
    note = "Student health visit.\nHPI: sore throat, fever.\nAssessment: Infectious mononucleosis.\nPlan: rest.\n"
    assert rules.alternative_stated(cs, note, ["B27.90", "B27.99"]) == [Rejected("B27.99", rules.OTHER_STATED)]
    # Where the assessment says more, the ranker's choice stands.
    more = "Student health visit.\nHPI: jaundice.\nAssessment: Infectious mononucleosis with hepatitis.\nPlan: rest.\n"
    assert rules.alternative_stated(cs, more, ["B27.90", "B27.99"]) == []


def test_tobacco_dependence_is_nicotine_dependence_and_states_its_product(cs):
    note = ("Urgent care visit.\nHPI: cough, smokes a pack a day.\nAssessment:\n1. Acute bronchitis.\n"
            "2. Tobacco dependence, cigarettes.\nPlan: nicotine patch.\n")
    assert rules.stated_in_assessment(cs, note, ["F17.210", "J20.9"], ["J20.9"]) == ["F17.210"]
    # The residual kind of the same category, which no sentence states, is a second guess.
    assert rules.alternative_stated(cs, note, ["J20.9", "F17.210", "F17.290"]) == [
        Rejected("F17.290", rules.OTHER_STATED)]


def test_a_coronary_stent_is_the_presence_of_a_coronary_angioplasty_implant(cs):
    note = ("Cardiology follow-up.\nHPI: stent to the LAD two years ago.\nAssessment:\n1. Old myocardial "
            "infarction.\n2. Coronary stent in place.\nPlan: aspirin.\n")
    assert rules.stated_in_assessment(cs, note, ["I25.2", "Z95.5"], ["I25.2"]) == ["Z95.5"]


def test_without_complications_never_states_a_code_with_complications(cs):
    note = ("Follow-up visit.\nHPI: labs.\nAssessment: Type 2 diabetes mellitus without complications.\n"
            "Plan: metformin.\n")
    assert rules.stated_in_assessment(cs, note, ["E11.8", "E11.9"], []) == ["E11.9"]


@pytest.mark.parametrize("item, pool, stated", [
    # "..., not specified as traumatic" is the default a note states by not saying otherwise;
    # "tear or rupture" is either.
    ("Nontraumatic complete rotator cuff tear, left shoulder.", ["M75.102", "M75.122", "M75.121"], ["M75.122"]),
    # ", current injury": the 7th character already says which visit of which injury.
    ("Bucket-handle tear of the medial meniscus, right knee, acute.", ["S83.219A", "S83.211A"], ["S83.211A"]),
    # "due to" for "secondary to"; "cycles" for "cycle".
    ("Iron deficiency anemia due to chronic blood loss.", ["D50.9", "D50.0"], ["D50.0"]),
    ("Menorrhagia with regular cycles.", ["N92.1", "N92.0"], ["N92.0"]),
    # Herpes labialis is herpes simplex of the lip; "mucopurulent" is H10.02- alone.
    ("Herpes labialis, recurrent.", ["B00.9", "B00.1"], ["B00.1"]),
    ("Mucopurulent conjunctivitis of both eyes.", ["H10.9", "H10.029", "H10.023"], ["H10.023"]),
    # An "unspecified" code with its cause, and the organism (B95-B97) that the cause names.
    ("Chronic gastritis due to H. pylori infection, without bleeding.", ["K29.70", "K29.50", "B96.81"],
     ["K29.50", "B96.81"]),
    # An organism the condition's own code names is not coded again.
    ("Acute bronchiolitis due to respiratory syncytial virus.", ["J21.0", "B97.4"], ["J21.0"]),
    # "Other specified diabetes" is a kind the note must name.
    ("Mild nonproliferative diabetic retinopathy without macular edema.", ["E13.3299"], []),
])
def test_the_assessment_states_a_code_in_the_words_notes_use(cs, item, pool, stated):
    note = f"Clinic visit.\nHPI: 50-year-old woman.\nAssessment:\n1. {item}\nPlan: follow up.\n"
    assert rules.stated_in_assessment(cs, note, pool, []) == stated


def test_a_pregnant_patients_condition_is_the_one_in_pregnancy(cs):
    """O24.410 is "Gestational diabetes mellitus in pregnancy, diet controlled": a note at 28
    weeks states it (O24.420 is in childbirth); without a pregnancy in the note, nothing."""
    pool = ["O24.419", "O24.420", "O24.410"]
    note = ("Prenatal visit.\nHPI: 31-year-old G2P1 at 28 weeks 3 days, failed glucose tolerance test.\n"
            "Assessment: Gestational diabetes, diet controlled.\nPlan: diet.\n")
    assert rules.stated_in_assessment(cs, note, pool, []) == ["O24.410"]
    assert rules.stated_in_assessment(cs, note.replace("at 28 weeks 3 days, ", ""), pool, []) == []


def test_initials_do_not_end_a_sentence(cs):
    """"E. coli" and "H. pylori" are in the sentence of their condition: the UTI stays beside its
    organism rather than reading as a second guess at the item."""
    note = ("Primary care.\nHPI: dysuria.\nAssessment: Urinary tract infection due to E. coli. "
            "No evidence of pyelonephritis.\nPlan: nitrofurantoin.\n")
    assert rules.alternative_stated(cs, note, ["N39.0", "B96.20"]) == []
    assert set(rules.established_in_assessment(cs, note, ["N39.0", "B96.20"])) == {"N39.0", "B96.20"}


def test_a_combination_takes_its_child_from_the_most_specific_code_beside_it(cs):
    """Hypertension with ESRD is I12.0: not I12.9 ("stage 1 through stage 4") where the ranker
    chose it, nor blocked by a generic N18.9 beside N18.6."""
    applied = rules.apply([("N18.6", 0.9), ("I10", 0.9), ("N18.9", 0.7), ("I12.9", 0.5)], cs)
    assert [c for c, _ in applied.kept] == ["N18.6", "I12.0"]
    assert {r.raw: r.reason for r in applied.dropped} == {
        "I10": rules.IN_COMBINATION, "I12.9": rules.IN_COMBINATION, "N18.9": rules.LESS_SPECIFIC}


@pytest.mark.parametrize("history, added", [
    ("End-stage renal disease, on hemodialysis three times a week.", True),
    ("End-stage renal disease on peritoneal dialysis at home.", True),
    ("End-stage renal disease; will start hemodialysis next month.", False),  # planned
    ("End-stage renal disease, not on dialysis yet.", False),                 # negated
])
def test_a_status_the_code_asks_for_is_coded_where_the_note_says_it(cs, history, added):
    """N18.6 asks for the dialysis status (Z99.2) in its "Use additional code" note."""
    note = f"Nephrology.\nHPI: 66-year-old man. {history}\nAssessment: ESRD.\nPlan: labs.\n"
    found = rules.status_asked(cs, note, ["N18.6"])
    assert set(found) == ({"Z99.2"} if added else set())
    if added:
        assert found["Z99.2"][1] == ["N18.6"] and "dialysis" in note[slice(*found["Z99.2"][0])]
    assert rules.status_asked(cs, note, ["I10"]) == {}  # no code asks for it


def test_a_code_the_note_says_with_one_of_its_words_absent_is_contradicted(cs):
    note = "Clinic visit.\nLabs: ferritin 18, hemoglobin normal.\nAssessment: Iron deficiency without anemia.\n"
    assert rules.contradicted(cs, note, ["D50.9", "E61.1"]) == [Rejected("D50.9", rules.CONTRADICTED)]
    assert rules.contradicted(cs, note.replace("without anemia", "anemia"), ["D50.9"]) == []


@pytest.mark.parametrize("assessment, kept, gone", [
    # E53.8's term "Vitamin B12 deficiency" is a part of D51.0's title.
    ("Pernicious anemia with vitamin B12 deficiency.", "D51.0", "E53.8"),
])
def test_a_code_stated_only_in_the_words_of_another_stated_title_goes(cs, assessment, kept, gone):
    note = f"Clinic visit.\nHPI: follow-up.\nAssessment: {assessment}\nPlan: treat.\n"
    assert rules.reported_by_stated(cs, note, [kept, gone]) == [Rejected(gone, rules.LESS_SPECIFIC)]
    result = fixed_pipeline(cs, [(kept, 0.9), (gone, 0.9)]).suggest(note)
    assert kept in result.codes and gone not in result.codes


def test_a_code_the_other_asks_for_stays_beside_it(cs):
    """I16.0 asks for the hypertension (Code also), E11.22 for the stage of the CKD (N18.1-N18.6):
    each stays, and so does N18.9, a CKD of unknown stage, of the category E11.22 asks for."""
    note = ("Clinic visit.\nHPI: follow-up.\nAssessment:\n1. Hypertensive urgency. Essential hypertension.\n"
            "2. Type 2 diabetes with diabetic chronic kidney disease, chronic kidney disease stage 4.\nPlan: labs.\n")
    assert rules.reported_by_stated(cs, note, ["I16.0", "I10", "E11.22", "N18.4"]) == []
    assert rules.reported_by_stated(cs, note, ["E11.22", "N18.9"]) == []  # a CKD of unknown stage


def test_a_sibling_said_beside_the_generic_wording_is_the_specific_code(cs):
    """"Pernicious anemia with vitamin B12 deficiency" says D51.9's words and D51.0's inclusion
    term "Pernicious anemia" in one sentence: D51.0, not the unspecified D51.9."""
    note = "Clinic visit.\nHPI: tired.\nAssessment: Pernicious anemia with vitamin B12 deficiency.\nPlan: B12.\n"
    assert rules.specific_in_assessment(cs, note, ["D51.9"]) == {"D51.9": "D51.0"}
    assert rules.specific_in_assessment(cs, note.replace("Pernicious anemia with v", "V"), ["D51.9"]) == {}


def test_a_plan_item_makes_no_second_guess_an_assessment_item(cs):
    """K75.9 "Inflammatory liver disease" is only a part of the fatty liver disease item (K76.0);
    "Repeat liver enzymes" in the plan diagnoses nothing."""
    note = ("Hepatology referral.\nHPI: elevated liver enzymes.\nAssessment:\n1. Nonalcoholic fatty liver disease.\n"
            "2. Hyperlipidemia.\nPlan: Weight loss. Repeat liver enzymes in 6 months.\n")
    assert Rejected("K75.9", rules.OTHER_STATED) in rules.alternative_stated(cs, note, ["K76.0", "E78.5", "K75.9"])


def test_a_residual_symptom_beside_its_stated_sibling_goes(cs):
    note = ("Urology consultation.\nHPI: blood on urinalysis.\nAssessment: Asymptomatic microscopic hematuria.\n"
            "Plan: CT.\n")
    assert rules.alternative_stated(cs, note, ["R31.21", "R31.29"]) == [Rejected("R31.29", rules.OTHER_STATED)]


@pytest.mark.parametrize("history, added", [
    ("Smokes half a pack a day.", True),
    ("Currently smokes 10 cigarettes a day, not ready to quit.", True),
    ("Smokes marijuana on weekends.", False),            # no cigarettes counted
    ("Her father smokes 2 packs a day at home.", False),  # a relative
    ("Quit smoking 5 years ago, 20 pack-years.", False),  # not now
    ("Denies that he smokes cigarettes.", False),
])
def test_a_current_cigarette_smoker_is_coded_as_nicotine_dependence(cs, history, added):
    note = f"Dermatology visit.\nHPI: 29-year-old with painful nodules. {history}\nAssessment: Acne.\nPlan: advised.\n"
    found = rules.current_smoking(cs, note, ["L70.0"])
    assert list(found) == (["F17.210"] if added else [])
    assert rules.current_smoking(cs, note, ["L70.0", "F17.200"]) == {}   # a tobacco code already
    assert rules.current_smoking(cs, f"Case report. {history}", []) == {}  # no encounter note


@pytest.mark.parametrize("assessment, asking, added", [
    ("Diabetic foot ulcer of the right heel with fat layer exposed.", "E11.621", "L97.412"),
    ("Type 2 diabetes with foot ulcer of the left midfoot, limited to breakdown of skin.", "E11.621", "L97.421"),
    ("Diabetic foot ulcer.", "E11.621", None),                     # no site said: no guess
    ("Type 2 diabetes with foot ulcer, right ankle and foot pain.", "E11.621", None),
])
def test_a_range_a_code_asks_for_is_coded_where_the_assessment_says_its_detail(cs, assessment, asking, added):
    """E11.621 asks for the ulcer's site and depth (L97.4-, L97.5-): the code of the range whose own
    words the assessment says beyond the range's shared "Non-pressure chronic ulcer of"; not an
    "other part of foot" code where a named part (heel) says as much."""
    note = f"Wound clinic.\nHPI: ulcer for 6 weeks.\nAssessment: {assessment}\nPlan: offloading.\n"
    found = rules.detail_asked(cs, note, [asking])
    assert list(found) == ([added] if added else [])
    if added:
        assert found[added][1] == [asking]
        assert rules.detail_asked(cs, note, [asking, "L97.419"]) == {}  # the range is coded already


def test_a_stated_code_names_no_other_part_the_note_did_not_name(cs):
    """"Urinary tract infection in pregnancy ... 22 weeks" says O23.42's words (its "unspecified"
    aside, the weeks coded apart as Z3A.22) and as many of O23.32 "Infections of other parts of
    urinary tract in pregnancy": the code that names no other part."""
    note = ("Obstetric visit.\nHPI: 27-year-old G2P1 at 22 weeks 3 days with dysuria.\n"
            "Assessment: Urinary tract infection in pregnancy due to E. coli, second trimester, 22 weeks.\n"
            "Plan: Cephalexin.\n")
    assert rules.stated_in_assessment(cs, note, ["O23.32", "O23.42"], []) == ["O23.42"]


def test_the_detail_a_code_asks_for_comes_in_with_its_own_words_as_evidence(cs):
    note = ("Wound clinic.\nHPI: ulcer for 6 weeks.\nAssessment: Diabetic foot ulcer of the right heel with fat "
            "layer exposed, type 2 diabetes mellitus.\nPlan: offloading.\n")
    result = fixed_pipeline(cs, [("E11.621", 0.9)]).suggest(note)
    added = next(s for s in result.suggestions if s.code == "L97.412")
    assert added.evidence.text == "ulcer of the right heel with fat layer exposed"
    assert added.asked_by == ["E11.621"]


@pytest.mark.parametrize("item, pool, stated", [
    # A term from above holds for each code under it with what its own title adds: A04.7's
    # "Clostridioides difficile colitis" is A04.72 ("not specified as recurrent"), and A04.71
    # only where the note says "recurrent". The search may rank the sibling first: its siblings
    # are read too.
    ("Clostridioides difficile colitis, first episode.", ["K52.9", "A04.71"], ["A04.72"]),
    ("Recurrent Clostridioides difficile colitis.", ["K52.9", "A04.72"], ["A04.71"]),
    # Two "with" codes of one condition, each naming its own complication: both.
    ("Type 2 diabetes mellitus with hyperglycemia and diabetic chronic kidney disease.",
     ["E11.22", "E11.65"], ["E11.22", "E11.65"]),
])
def test_the_assessment_states_each_code_its_words_hold(cs, item, pool, stated):
    note = f"Clinic visit.\nHPI: 50-year-old woman.\nAssessment:\n1. {item}\nPlan: follow up.\n"
    chosen = [c for c in pool if c in stated][:1]
    assert sorted(chosen + rules.stated_in_assessment(cs, note, rules.with_siblings(cs, pool), chosen)) == stated


@pytest.mark.parametrize("item, generic, specific", [
    # An "unspecified" code does not replace one that says what it leaves unsaid: I47.9
    # "Paroxysmal tachycardia, unspecified" is no more than I47.10 "Supraventricular tachycardia".
    ("Supraventricular tachycardia, paroxysmal.", "I47.10", None),
    ("Permanent atrial fibrillation.", "I48.91", "I48.21"),
    # Codes stating as many words: the one whose wordings hold more of the sentence (R56.00's
    # "Simple febrile convulsions", not R56.01's "Complicated febrile seizure").
    ("Simple febrile seizure.", "R56.9", "R56.00"),
])
def test_an_unspecified_code_gives_way_only_to_a_code_that_says_more(cs, item, generic, specific):
    note = f"Clinic visit.\nHPI: 2-year-old boy.\nAssessment:\n1. {item}\nPlan: follow up.\n"
    assert rules.specific_in_assessment(cs, note, [generic]).get(generic) == specific


def test_a_code_excluded_by_a_stated_symptom_code_goes(cs):
    """"Simple febrile seizure" states R56.00 (a symptom code), whose category excludes epilepsy
    (G40.-): the G40.909 that the word "seizure" suggested goes, as beside a stated diagnosis."""
    note = ("ED note.\nHPI: 18-month-old boy, a 2-minute generalized seizure with a fever of 103 F, "
            "runny nose for 2 days. No prior seizures.\n"
            "Assessment: Simple febrile seizure. Viral upper respiratory infection.\nPlan: antipyretics.\n")
    result = fixed_pipeline(cs, [("R56.9", 0.7), ("J06.9", 0.4), ("G40.909", 0.3)]).suggest(note)
    assert sorted(result.codes) == ["J06.9", "R56.00"]
    assert ("G40.909", rules.EXCLUDED) in [(r.raw, r.reason) for r in result.rejected]
