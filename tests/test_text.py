"""The note's clauses: a negation cue covers the list after it, and no more."""
import pytest

from models.text import clauses, essential_stems


def kept(note: str) -> list[str]:
    return [note[a:b] for a, b in clauses(note)]


def test_a_negation_covers_every_item_of_the_list_after_it():
    assert kept("Denies chest pain, dysphagia or weight loss.") == []
    assert kept("No fever, chills, night sweats or weight loss. Cough for 3 days.") == [
        "Cough for 3 days."]
    assert kept("There was no evidence of metastasis, lymphadenopathy or effusion.") == []


@pytest.mark.parametrize("cue", ["No evidence of", "No signs of", "No history of", "Negative for",
                                 "Denies", "Without", "Ruled out:", "CT rules out"])
def test_each_cue_negates_its_list(cue):
    assert kept(f"{cue} pulmonary embolism, pneumonia or pleural effusion.") == []


def test_the_next_sentence_is_not_negated():
    assert kept("No fever. Cough for 3 days.") == ["Cough for 3 days."]
    assert kept("Denies chest pain, dyspnea\nHypertension") == ["Hypertension"]


def test_what_comes_before_the_cue_stays():
    assert kept("He has hypertension, and denies chest pain.") == ["He has hypertension"]
    assert kept("He has hypertension and denies chest pain, nausea or vomiting.") == [
        "He has hypertension and"]
    assert kept("Cough with no fever, chills or night sweats.") == ["Cough"]
    assert kept("Cough without fever, chills or night sweats.") == ["Cough"]


def test_a_contrast_word_ends_the_negation():
    assert kept("Denies chest pain, dyspnea, but reports palpitations.") == ["reports palpitations."]
    assert kept("No fever, chills; positive for cough.") == ["positive for cough."]
    assert kept("No complaints except cough and headache.") == ["cough and headache."]
    assert kept("No metastasis, effusion, however the liver showed cirrhosis.") == [
        "the liver showed cirrhosis."]


def test_a_clause_that_starts_anew_ends_the_negation():
    assert kept("No fever, chills, and he reports a productive cough.") == [
        "and he reports a productive cough."]
    assert kept("A man with no relevant history, who underwent vasectomy.") == [
        "who underwent vasectomy."]
    assert kept("A boy with no history of interest presented with headache and nocturia.") == [
        "presented with headache and nocturia."]
    assert kept("No history of interest, admitted to the emergency department with headaches.") == [
        "admitted to the emergency department with headaches."]  # no list item is that long


def test_cues_written_after_or_before_a_qualifier_negate_no_list():
    assert kept("Pulmonary embolism was ruled out, pneumonia confirmed.") == ["pneumonia confirmed."]
    assert kept("Type 2 diabetes without complications, hypertension, asthma.") == [
        "Type 2 diabetes", "hypertension", "asthma."]


def test_the_subject_of_a_denial_is_not_a_clause():
    assert kept("The patient denies chest pain.") == []
    assert kept("Patient denies chest pain, dyspnea. Hypertension, diabetes.") == [
        "Hypertension", "diabetes."]


def test_lists_without_negation_are_split_as_before():
    assert kept("Hypertension, type 2 diabetes, asthma.") == [
        "Hypertension", "type 2 diabetes", "asthma."]
    assert kept("Headache while walking") == ["Headache", "walking"]


def test_an_entry_asks_only_for_its_essential_words():
    assert essential_stems("Pneumonia, unspecified organism") == {"pneumonia"}
    assert essential_stems("Seizure(s) (convulsive) NOS") == {"seizure"}
    assert essential_stems("Renal insufficiency (acute)") == {"renal", "insufficiency"}
    # An entry made only of such words keeps them, so it can still be matched.
    assert essential_stems("Other specified (disorder)") == {"disorder"}
