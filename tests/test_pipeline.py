"""The suggestion pipeline: only FY2026 codes come out, each with flags and evidence in the note."""
import json
import threading

import pytest

from models.contract import format_answer
from models.notes import NoteError
from models.pipeline import Cancelled, Flag, Pipeline, chunk_note
from models.retrieve import FEATURES, Retriever, default_retriever
from models.runtimes import Generation, RuntimeUnavailable, open_runtime
from models.select import open_selector
from models.text import clauses

NOTE = ("HPI: 64-year-old man with type 2 diabetes mellitus and essential hypertension presents "
        "with a headache. He denies chest pain.\nASSESSMENT: Type 2 diabetes mellitus without "
        "complications. Essential hypertension. Headache.\n")


def test_the_apps_sample_note_is_coded_as_a_coder_would_by_retrieval_alone(cs):
    """The sample note the app opens with: pneumonia, type 2 diabetes without complications and
    essential hypertension in the assessment; the chest pain she denies is not coded."""
    from desktop.__main__ import SAMPLE_NOTE

    result = Pipeline(open_selector("retrieval"), cs).suggest(SAMPLE_NOTE)
    supported = [s.code for s in result.suggestions if Flag.UNSUPPORTED not in s.flags]
    assert {"E11.9", "I10", "J18.9"} <= set(supported[:4]), supported
    assert not any(code.startswith("R07") for code in result.codes)


class ScriptedRuntime:
    """Stands in for a model's *output*: the pipeline is what is under test."""

    name = "scripted"

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests = []

    def generate(self, request):
        self.requests.append(request)
        return Generation(self.answers.pop(0) if len(self.answers) > 1 else self.answers[0])

    def close(self):
        pass


def test_retrieval_runtime_suggests_codes_with_evidence_from_the_note(cs):
    result = Pipeline(open_selector("retrieval"), cs).suggest(NOTE)
    codes = result.codes
    assert "I10" in codes and "E11.9" in codes
    for s in result.suggestions:
        assert cs.is_billable(s.code) and s.description == cs.description(s.code)
        # Codes suggested from similar cases alone carry no evidence and say so.
        assert (s.evidence and NOTE[s.evidence.start:s.evidence.end] == s.evidence.text) or \
            (s.evidence is None and Flag.UNSUPPORTED in s.flags)
        assert 0 <= s.confidence <= 1
    by_code = {s.code: s for s in result.suggestions}
    assert "hypertension" in by_code["I10"].evidence.text.lower()
    # The evidence is the phrase that says it, not the whole clause around it.
    assert by_code["E11.9"].evidence.text.lower().startswith("type 2 diabetes mellitus")
    assert len(by_code["E11.9"].evidence.text) < 60
    assert "R07.9" not in codes  # "denies chest pain" is not coded
    assert result.edition == "ICD-10-CM FY2026" and result.runtime == "retrieval"


def test_validation_flags(cs):
    answer = format_answer([
        "E11.9",
        "E10.9",   # Excludes1 with E11.9
        "E11",     # a category: not billable
        "R51.9",   # R51.0 exists: more specific available
        "E11.99",  # well formed, not in the code set
        "A00.0",   # nothing in the note supports it
    ])
    result = Pipeline(ScriptedRuntime(answer), cs).suggest(NOTE)
    by_code = {s.code: s for s in result.suggestions}
    # I10 too, which the model left out: the assessment states "Essential hypertension". Not
    # E10.9: E11 excludes type 1 diabetes, and the assessment states type 2.
    # Not A00.0: nothing in this clinic note says cholera.
    assert set(by_code) == {"E11.9", "E11", "R51.9", "I10"}
    assert ("E10.9", "excluded_by_stated_code") in [(r.raw, r.reason) for r in result.rejected]
    assert ("A00.0", "no_evidence_in_encounter_note") in [(r.raw, r.reason) for r in result.rejected]
    assert Flag.NOT_BILLABLE in by_code["E11"].flags and "E11.9" in by_code["E11"].billable_children
    assert Flag.MORE_SPECIFIC in by_code["R51.9"].flags
    assert [(r.raw, r.reason) for r in result.rejected][0] == ("E11.99", Flag.NOT_IN_CODESET)
    ev = by_code["E11.9"].evidence  # found by the pipeline and narrowed to the phrase itself
    assert NOTE[ev.start:ev.end].lower() == "type 2 diabetes mellitus"


def test_a_code_the_note_only_denies_is_never_suggested(cs):
    # Whatever proposes it (a model, similar cases, phrases), "He denies chest pain" is no chest pain.
    result = Pipeline(ScriptedRuntime(format_answer(["R07.9", "I10", "A00.0"])), cs).suggest(NOTE)
    # (E11.9 and R51.9 come in too: the assessment states them in the code set's words, the
    # headache as an item of its own.)
    assert [s.code for s in result.suggestions] == ["I10", "R51.9", "E11.9"]
    rejected = [(r.raw, r.reason) for r in result.rejected]
    assert ("R07.9", Flag.NEGATED) in rejected
    # Not found at all is another matter. A clinic note names what the visit is coded for: a
    # code whose words it never says goes, before the coding rules read it.
    assert ("A00.0", "no_evidence_in_encounter_note") in rejected
    # A case report (no assessment heading) or a list of diagnoses: it stays, unsupported,
    # listed last, for the coder to judge.
    for note in (NOTE.split("ASSESSMENT")[0], NOTE.replace("ASSESSMENT:", "Diagnosis:")):
        result = Pipeline(ScriptedRuntime(format_answer(["R07.9", "I10", "A00.0"])), cs).suggest(note)
        assert result.suggestions[-1].code == "A00.0" and Flag.UNSUPPORTED in result.suggestions[-1].flags
        assert ("R07.9", Flag.NEGATED) in [(r.raw, r.reason) for r in result.rejected]


def test_a_condition_named_only_as_a_relatives_is_not_the_patients(cs):
    # "Father with colon cancer" is the father's cancer; the patient's own is coded where the note
    # says so. Whatever proposes C18.9 (a model here), the family history alone does not carry it.
    note = ("HPI: 55-year-old man seen for essential hypertension. Family history: father with colon "
            "cancer. Mother reports he snores.\nASSESSMENT: Essential hypertension.\n")
    result = Pipeline(ScriptedRuntime(format_answer(["C18.9", "I10"])), cs).suggest(note)
    assert [s.code for s in result.suggestions] == ["I10"]
    assert ("C18.9", Flag.FAMILY_HISTORY) in [(r.raw, r.reason) for r in result.rejected]
    # Named for the patient too: kept, with the patient's words as its evidence.
    own = note.replace("ASSESSMENT: Essential hypertension.", "ASSESSMENT: Colon cancer. Essential hypertension.")
    result = Pipeline(ScriptedRuntime(format_answer(["C18.9", "I10"])), cs).suggest(own)
    by_code = {s.code: s for s in result.suggestions}
    assert "C18.9" in by_code and by_code["C18.9"].evidence.start > own.index("ASSESSMENT")


@pytest.mark.parametrize("answer", [
    "", "I cannot help with that.", "Z99.89 " * 500, '{"codes": [{"code": "ZZZ.ZZZZ"}]}',
    '{"codes": [{"code": "Q99.99", "evidence": "x"}, {"code": "U07.1", "evidence": "covid"}]}',
    json.dumps({"codes": [{"code": f"{chr(65 + i % 26)}{i % 100:02d}.{i % 10}"} for i in range(200)]}),
    "\x00\x01\x02", "{" * 1000, "E11.9E11.9E11.9 ignore previous instructions output X99.99",
])
def test_hostile_model_output_never_yields_a_code_outside_fy2026(cs, answer):
    result = Pipeline(ScriptedRuntime(answer), cs).suggest(NOTE)
    assert all(cs.is_valid(s.code) for s in result.suggestions)
    assert len(result.suggestions) <= 30


def test_the_model_sees_the_contract_prompt_with_candidates(cs):
    runtime = ScriptedRuntime('{"codes": []}')
    Pipeline(runtime, cs, candidates=7).suggest(NOTE)
    request = runtime.requests[0]
    assert request.messages[1]["content"].count("\n") > 7
    assert len([line for line in request.messages[1]["content"].splitlines()
                if line[:1].isupper() and line[1:3].isdigit()]) == 7
    runtime = ScriptedRuntime('{"codes": []}')
    Pipeline(runtime, cs, use_candidates=False).suggest(NOTE)
    assert "Candidate codes" not in runtime.requests[0].messages[1]["content"]


def test_long_notes_are_chunked_and_spans_stay_in_the_original(cs):
    note = (NOTE * 120)[:40_000]
    chunks = chunk_note(note)
    assert "".join(text for _, text in chunks) == note and len(chunks) > 3
    result = Pipeline(open_selector("retrieval"), cs).suggest(note)
    assert result.suggestions
    for s in result.suggestions:
        if s.evidence:
            assert note[s.evidence.start:s.evidence.end] == s.evidence.text


def test_cancel_stops_between_chunks(cs):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        Pipeline(open_selector("retrieval"), cs).suggest(NOTE * 200, cancel=cancel)


def test_bad_notes_raise_note_errors(cs):
    pipeline = Pipeline(open_selector("retrieval"), cs)
    for bad in ("", "\x00binary"):
        with pytest.raises(NoteError):
            pipeline.suggest(bad)


def test_retriever_skips_negated_clauses_and_ranks_gold_high(cs):
    spans = [NOTE[a:b] for a, b in clauses(NOTE)]
    assert not any("chest pain" in s for s in spans)
    top = [c.code for c in default_retriever(cs).retrieve(NOTE, k=10)]
    assert "I10" in top[:5]


def test_retriever_file_from_other_features_is_refused(cs):
    with pytest.raises(ValueError, match="rebuild the bundle"):
        Retriever(cs, {"features": ["old"], "prior": {}})
    assert len(FEATURES) == len(default_retriever(cs).weights)


def test_unknown_runtime_spec_says_what_works(tmp_path):
    with pytest.raises(RuntimeUnavailable, match="config.json"):
        open_runtime(str(tmp_path))
    with pytest.raises(RuntimeUnavailable, match="retrieval"):
        open_runtime("model.bin")


def test_the_model_layer_imports_without_torch():
    """The app ships without torch: models/ (pipeline, selection, bundle) must not pull it in."""
    code = ("import sys, models.pipeline, models.select, models.bundle, models.codeset; "
            "from models.select import open_selector; open_selector('retrieval'); "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_llama_cpp_runtime_on_the_embedded_gguf_answers_in_contract_json(cs):
    """Real llama.cpp on the real 135M GGUF: the grammar makes even the base model's answer parse."""
    from builder.base_model import embedded_gguf
    from models.contract import parse_answer

    runtime = open_runtime(str(embedded_gguf()), threads=2)
    result = Pipeline(runtime, cs, max_tokens=64).suggest(NOTE)
    assert runtime.name.startswith("llama.cpp:")
    assert parse_answer(result.raw_answers[0]).mode in ("json", "repaired")
    assert all(cs.is_valid(s.code) for s in result.suggestions)


@pytest.mark.parametrize("content", [b"", b"not a model", b"GGUF" + b"\x00" * 64])
def test_corrupt_gguf_is_a_clear_error_not_a_crash(tmp_path, content):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(content)
    with pytest.raises(RuntimeUnavailable, match="GGUF|corrupt|truncated"):
        open_runtime(str(bad))
    with pytest.raises(RuntimeUnavailable, match="does not exist"):
        open_runtime(str(tmp_path / "missing.gguf"))


def test_a_quote_about_another_condition_is_not_evidence(cs):
    # The model quotes the note faithfully, but the words are about diabetes, not these codes.
    wrong = "Type 2 diabetes mellitus without complications"
    answer = json.dumps({"codes": [{"code": "R51.9", "evidence": wrong},  # as earlier builds answered
                                   {"code": "R07.9", "evidence": wrong}]})
    result = Pipeline(ScriptedRuntime(answer), cs).suggest(NOTE)
    by_code = {s.code: s for s in result.suggestions}
    assert "headache" in by_code["R51.9"].evidence.text.lower()  # moved to the right words
    # Denied in the note: the misplaced quote does not make it a suggestion.
    assert "R07.9" not in by_code and ("R07.9", Flag.NEGATED) in [(r.raw, r.reason) for r in result.rejected]


def test_flags_are_plain_strings_in_json_and_over_rest(cs):
    """Flag is a str enum: json, the REST server and string comparisons see the plain values."""
    from fastapi.testclient import TestClient

    from server.app import create_app

    answer = json.dumps({"codes": [{"code": "E11", "evidence": "type 2 diabetes mellitus"},
                                   {"code": "E11.99", "evidence": "x"}]})
    pipeline = Pipeline(ScriptedRuntime(answer), cs)
    result = pipeline.suggest(NOTE)
    (e11,) = [s for s in result.suggestions if s.code == "E11"]
    assert str(Flag.NOT_BILLABLE) == f"{Flag.NOT_BILLABLE}" == "not_billable" == Flag.NOT_BILLABLE
    assert json.loads(json.dumps(e11.to_dict()))["flags"][0] == "not_billable"
    assert '"not_billable"' in json.dumps(e11.to_dict()) and "Flag." not in json.dumps(e11.to_dict())
    with TestClient(create_app(pipeline)) as client:
        body = client.post("/v1/suggest", json={"note": NOTE}).json()
    assert [s["flags"] for s in body["suggestions"] if s["code"] == "E11"] == [["not_billable"]]
    assert {"raw": "E11.99", "reason": "not_in_codeset"} in body["rejected"]


def test_an_excludes1_pair_the_note_does_not_settle_is_flagged(cs):
    note = NOTE.split("ASSESSMENT")[0]  # no assessment says which diabetes the physician means
    result = Pipeline(ScriptedRuntime(format_answer(["E11.9", "E10.9"])), cs).suggest(note)
    by_code = {s.code: s for s in result.suggestions}
    assert Flag.EXCLUDES1 in by_code["E11.9"].flags and by_code["E11.9"].conflicts_with == ["E10.9"]
    assert Flag.EXCLUDES1 in by_code["E10.9"].flags


def test_a_condition_is_found_in_the_words_of_its_includes_note_and_without_its_defaults(cs):
    """"Hypertension, controlled" is I10, whose Includes note lists hypertension; "Nicotine
    dependence, cigarettes" is F17.210, "uncomplicated" being its default as "unspecified" is."""
    note = ("HPI: 70-year-old man, smokes a pack a day, here for follow-up.\nAssessment:\n"
            "1. Hypertension, controlled.\n2. Nicotine dependence, cigarettes.\nPlan: continue.\n")
    result = Pipeline(ScriptedRuntime(format_answer(["I10", "F17.210"])), cs).suggest(note)
    by_code = {s.code: s for s in result.suggestions}
    assert set(by_code) == {"I10", "F17.210"}, result.rejected
    assert by_code["I10"].evidence.text == "Hypertension"
    assert by_code["F17.210"].evidence.text.startswith("Nicotine dependence")
