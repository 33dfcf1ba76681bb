"""The prompt contract: one definition for training and inference, a parser that never breaks."""
import json
import random

import pytest

from models.contract import (
    ANSWER_SCHEMA,
    GBNF,
    MAX_CODES,
    SYSTEM_PROMPT,
    Candidate,
    CodedItem,
    build_messages,
    format_answer,
    parse_answer,
    training_example,
)

NOTE = "72-year-old with type 2 diabetes and CKD stage 3. Denies chest pain."
CANDS = [Candidate("E11.22", "Type 2 diabetes mellitus with diabetic chronic kidney disease"),
         Candidate("N18.30", "Chronic kidney disease, stage 3 unspecified")]


def test_messages_carry_the_note_and_the_candidates():
    msgs = build_messages(NOTE, CANDS)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[0]["content"] == SYSTEM_PROMPT
    assert NOTE in msgs[1]["content"]
    assert "E11.22 Type 2 diabetes mellitus with diabetic chronic kidney disease" in msgs[1]["content"]
    assert "Candidate codes" not in build_messages(NOTE)[1]["content"]


def test_training_example_uses_the_same_prompt_as_inference():
    items = [CodedItem("E11.22", "type 2 diabetes and CKD stage 3")]
    ex = training_example(NOTE, items, CANDS)
    assert ex["prompt"] == build_messages(NOTE, CANDS)
    assert ex["completion"][0]["role"] == "assistant"
    assert parse_answer(ex["completion"][0]["content"]).codes == ["E11.22"]


def test_answer_is_codes_only_round_trips_and_matches_the_schema():
    text = format_answer([CodedItem("E11.22", "quoted words are not part of it"), "I10"])
    assert text == '{"codes": ["E11.22", "I10"]}'  # every answer token costs time on a CPU
    data = json.loads(text)
    assert set(data) == set(ANSWER_SCHEMA["properties"])
    parsed = parse_answer(text)
    assert parsed.mode == "json" and parsed.codes == ["E11.22", "I10"] and parsed.dropped == []


def test_answers_of_earlier_builds_with_quotes_still_parse():
    parsed = parse_answer('{"codes": [{"code": "E11.22", "evidence": "T2DM with CKD"}]}')
    assert parsed.items == [CodedItem("E11.22", "T2DM with CKD")]


def test_parser_reports_what_it_dropped_and_why():
    parsed = parse_answer(json.dumps({"codes": [
        {"code": "e11.22", "evidence": "T2DM"}, {"code": "E11.22", "evidence": "again"},
        {"code": "banana"}, {"evidence": "no code"}, 42]}))
    assert parsed.codes == ["E11.22"]
    assert [d.reason for d in parsed.dropped] == ["duplicate", "bad_format", "no_code", "no_code"]


def test_parser_repairs_an_answer_cut_off_by_the_token_limit():
    parsed = parse_answer('{"codes": [{"code": "I10", "evidence": "HTN"}, {"code": "E11.9", "evid')
    assert parsed.mode == "repaired" and parsed.codes == ["I10", "E11.9"]
    # A code cut in the middle ("E11.") is not read as a shorter code (E11).
    parsed = parse_answer('{"codes": ["I10", "J18.9", "E11.')
    assert parsed.mode == "repaired" and parsed.codes == ["I10", "J18.9"]


def test_parser_salvages_codes_from_prose_and_fences():
    assert parse_answer("The codes are I10 and E11.9.").codes == ["I10", "E11.9"]
    fenced = '```json\n{"codes": [{"code": "J18.9", "evidence": "pneumonia"}]}\n```'
    assert parse_answer(fenced).codes == ["J18.9"]
    assert parse_answer('Here you go: {"codes": [{"code": "R50.9", "evidence": "fever"}]} Done.').codes == ["R50.9"]


def test_parser_caps_the_number_of_codes():
    parsed = parse_answer(json.dumps({"codes": [f"A{i:02d}" for i in range(MAX_CODES + 5)]}))
    assert len(parsed.items) == MAX_CODES
    assert sum(d.reason == "too_many" for d in parsed.dropped) == 5


@pytest.mark.parametrize("text", ["", "no codes here", "{", "[", "null", "{}", '{"codes": 5}',
                                  '{"codes": [null]}', "{" * 5000, "\x00\xff\ud800", 12345, None])
def test_parser_never_raises_on_hostile_output(text):
    parsed = parse_answer(text)
    assert isinstance(parsed.items, list)


def test_parser_never_raises_on_random_output():
    rng = random.Random(0)
    alphabet = '{}[]":,. abcEI0123456789\\\n'
    for _ in range(2000):
        parse_answer("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))))


def test_grammar_constrains_real_llama_cpp_generation_to_the_contract():
    """The GBNF is accepted by llama.cpp and the base model's constrained output parses."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from builder.base_model import embedded_gguf
    from models.runtimes.llamacpp_runtime import load_llama

    llm = load_llama(embedded_gguf(), n_ctx=1024, n_threads=2, verbose=False, seed=0)
    grammar = llama_cpp.LlamaGrammar.from_string(GBNF, verbose=False)
    out = llm.create_chat_completion(build_messages(NOTE, CANDS), grammar=grammar,
                                     max_tokens=96, temperature=0)
    text = out["choices"][0]["message"]["content"]
    assert text.startswith('{"codes"')
    assert json.loads(text) if out["choices"][0]["finish_reason"] == "stop" else True
    parsed = parse_answer(text)
    assert parsed.mode in ("json", "repaired") and parsed.items  # codes, well formed
