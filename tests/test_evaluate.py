"""`builder evaluate`: metrics a model builder trusts, on real CodiEsp files and real runtimes."""
import json

import pytest

from builder.config import load_config
from builder.evaluation import evaluate
from models.contract import parse_answer
from models.pipeline import Pipeline
from models.runtimes import open_runtime

from .conftest import run_module

METRIC_KEYS = {"n_notes", "micro_precision", "micro_recall", "micro_f1", "macro_f1",
               "category_micro_f1", "exact_match", "invalid_rate", "non_billable_rate",
               "pred_codes_per_note", "gold_codes_per_note", "latency_p50_s", "latency_p95_s",
               "recall_at_10", "recall_at_20", "recall_at_50"}


def test_scores_match_a_hand_count():
    rows = [{"gold": ["E11.9", "I10"], "predicted": ["E11.9", "E11.65"]},
            {"gold": ["R52"], "predicted": ["R52"]}]
    m = evaluate.score(rows)
    # tp=2 (E11.9, R52), fp=1 (E11.65), fn=1 (I10)
    assert (m["micro_precision"], m["micro_recall"], m["micro_f1"]) == (0.6667, 0.6667, 0.6667)
    # categories: note 1 gold {E11, I10} pred {E11}; note 2 {R52} {R52}: tp 2, fp 0, fn 1
    assert m["category_micro_f1"] == 0.8
    assert m["exact_match"] == 0.5
    # per code F1: E11.9 1, I10 0, E11.65 0, R52 1
    assert m["macro_f1"] == 0.5


def test_gold_codes_are_brought_to_fy2026(cs):
    gold, bad = evaluate.gold_codes(["r51", "e11.9", "t14.90", "e11.9", "??"], cs)
    assert gold == ["R51.9", "E11.9", "T14.90"] and bad == 1


def test_evaluate_retrieval_on_codiesp_writes_every_report(tmp_path, small_codiesp):
    cfg = load_config(None, [])
    cfg.run_dir = str(tmp_path / "run")
    out = tmp_path / "eval"
    metrics = evaluate.run(cfg, f"codiesp:{small_codiesp / 'dev'}", "retrieval", str(out))
    assert METRIC_KEYS <= set(metrics) and metrics["n_notes"] == 3
    assert 0 < metrics["micro_f1"] <= 1 and metrics["invalid_rate"] == 0
    assert metrics["recall_at_10"] <= metrics["recall_at_20"] <= metrics["recall_at_50"]
    assert json.loads((out / "metrics.json").read_text()) == metrics
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all({"gold", "predicted", "flags", "candidates"} <= set(r) for r in rows)
    assert "micro_f1" in (out / "report.md").read_text()
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_on_a_jsonl_file(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text(json.dumps({"id": "a", "note": "Essential hypertension.", "codes": ["I10"]}) + "\n")
    metrics = evaluate.run(load_config(None, []), str(path), "retrieval", str(tmp_path / "out"))
    assert metrics["n_notes"] == 1 and metrics["micro_recall"] == 1.0


def test_evaluate_scores_the_coding_rules_both_ways(tmp_path):
    """A note coded the CodiEsp way (symptom beside its diagnosis): the rules drop the symptom,
    and the report gives the F1 the same run would have had without them."""
    path = tmp_path / "notes.jsonl"
    note = ("Community-acquired pneumonia of the right lower lobe on chest X-ray. Productive cough "
            "for a week. Essential hypertension.")
    path.write_text(json.dumps({"id": "a", "note": note, "codes": ["J18.9", "R05.9", "I10"]}) + "\n")
    with_rules = evaluate.run(load_config(None, []), str(path), "retrieval", str(tmp_path / "a"))
    without = evaluate.run(load_config(None, []), str(path), "retrieval", str(tmp_path / "b"),
                           coding_rules=False)
    rows = [json.loads(line) for line in (tmp_path / "a/predictions.jsonl").read_text().splitlines()]
    dropped = [r["raw"] for r in rows[0]["rejected"] if r["reason"] in evaluate.RULE_REASONS]
    assert with_rules["coding_rules"] and not without["coding_rules"]
    assert with_rules["micro_f1_without_coding_rules"] == without["micro_f1"]
    assert not set(dropped) & set(rows[0]["predicted"])
    if dropped:  # the rules changed something: the two scores differ accordingly
        assert with_rules["micro_f1"] != without["micro_f1"]


def test_the_score_without_rules_leaves_out_the_drug_therapy_they_add(tmp_path):
    path = tmp_path / "notes.jsonl"
    note = "Type 2 diabetes mellitus with hyperglycemia. She takes metformin 1000 mg twice daily."
    path.write_text(json.dumps({"id": "a", "note": note, "codes": ["E11.65", "Z79.84"]}) + "\n")
    with_rules = evaluate.run(load_config(None, []), str(path), "retrieval", str(tmp_path / "a"))
    without = evaluate.run(load_config(None, []), str(path), "retrieval", str(tmp_path / "b"),
                           coding_rules=False)
    rows = [json.loads(line) for line in (tmp_path / "a/predictions.jsonl").read_text().splitlines()]
    assert "additional_code" in rows[0]["flags"]["Z79.84"]
    assert with_rules["micro_recall"] == 1.0 and without["micro_recall"] == 0.5
    assert with_rules["micro_f1_without_coding_rules"] == without["micro_f1"]


def test_evaluate_cli_bad_data_is_a_clear_error(tmp_path):
    out = run_module("builder", "evaluate", "--data", "nonsense", "--run-dir", str(tmp_path))
    assert out.returncode == 1 and "codiesp:FOLDER" in out.stderr and "Traceback" not in out.stderr


def test_transformers_runtime_on_a_tiny_model_returns_only_fy2026_codes(
        tiny_llama_folder, contract_tiny_model, cs):
    from builder.answer_check import CHECK_NOTES

    runtime = open_runtime(str(tiny_llama_folder))
    assert runtime.name.split(":")[0] in ("transformers fp32", "transformers bf16")  # bf16 on AMX
    # Without the coding rules: what the model wrote is under test, not what the rules add.
    result = Pipeline(runtime, cs, max_tokens=24, coding_rules=False).suggest("Essential hypertension, stable.")
    assert len(result.raw_answers) == 1 and result.raw_answers[0]  # random weights: gibberish
    assert result.codes == [i.code for i in parse_answer(result.raw_answers[0]).items
                            if cs.is_valid(i.code)]  # parsed without error; only real codes kept
    trained = Pipeline(open_runtime(str(contract_tiny_model)), cs, max_tokens=24,
                       coding_rules=False).suggest(CHECK_NOTES[0])
    assert trained.codes == ["I10"] and all(cs.is_valid(s.code) for s in trained.suggestions)


@pytest.mark.slow
def test_base_model_end_to_end(cs):
    """The real SmolLM2-135M through the pipeline: the HF folder converted once from the embedded
    GGUF (free text), and the GGUF itself in llama.cpp (the contract's grammar)."""
    from builder.base_model import embedded_gguf, ensure_base_model

    note = "Assessment: essential hypertension. Type 2 diabetes mellitus without complications."
    folder = ensure_base_model()
    result = Pipeline(open_runtime(folder), cs, max_tokens=48, coding_rules=False).suggest(note)
    assert result.raw_answers[0].strip()  # the model wrote something
    # Each real code it wrote comes out (most confident first, not in the order written).
    assert sorted(result.codes) == sorted({i.code for i in parse_answer(result.raw_answers[0]).items
                                           if cs.is_valid(i.code)})
    constrained = Pipeline(open_runtime(str(embedded_gguf()), threads=1), cs, max_tokens=48,
                           coding_rules=False).suggest(note)
    written = parse_answer(constrained.raw_answers[0]).items
    assert written  # the grammar makes it write codes
    assert constrained.suggestions and all(cs.is_valid(s.code) for s in constrained.suggestions)
    # Every code it wrote came out as a suggestion (FY2026) or was rejected with a reason.
    assert {i.code for i in written} <= set(constrained.codes) | {r.raw for r in constrained.rejected}


def test_report_gathers_every_evaluation_into_one_table_and_chart(tmp_path):
    from builder.evaluation import report

    path = tmp_path / "notes.jsonl"
    path.write_text(json.dumps({"id": "a", "note": "Essential hypertension.", "codes": ["I10"]}) + "\n")
    cfg = load_config(None, [])
    cfg.run_dir = str(tmp_path / "run")
    evaluate.run(cfg, str(path), "retrieval", str(tmp_path / "run/eval/notes__retrieval"))
    out = report.run(cfg.run_dir)
    assert out["evaluations"] == 1 and "| notes.jsonl | retrieval alone | 1 |" in out["table"]
    assert (tmp_path / "run/eval/summary.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(FileNotFoundError, match="builder evaluate"):
        report.run(str(tmp_path / "empty"))


def test_report_names_each_kind_of_system_by_runtime_not_by_path():
    from builder.evaluation.report import system_name

    def name(system, label="model", with_candidates=True):
        return system_name({"system": system, "label": label, "with_candidates": with_candidates})

    assert name("verifier:llama.cpp:run/bundle/gguf/icd10-coder-Q4_K_M.gguf", "bundle") == \
        "verifier GGUF Q4_K_M (llama.cpp) over the ranker"
    assert name("verifier:onnx:run/bundle/onnx/int8") == "verifier ONNX int8 over the ranker"
    assert name("verifier:openai:http://127.0.0.1:8765/v1#icd10-verifier") == \
        "verifier served by openai (icd10-verifier) over the ranker"
    assert name("transformers:run/merged") == "merged (PyTorch fp32) + candidates"
    assert name("verifier:transformers bf16:run/bundle/merged", "bundle") == \
        "verifier merged (PyTorch bf16) over the ranker"  # what the builder runs on AMX
    assert name("llama.cpp:x/icd10-coder-Q8_0.gguf", with_candidates=False) == \
        "GGUF Q8_0 (llama.cpp), zero-shot"
    assert name("retrieval", "retrieval") == "retrieval alone"


def test_synthetic_val_is_the_data_stage_validation_set(tmp_path, small_codiesp):
    """`--data synthetic-val` scores the data stage's own synthetic validation notes: read from
    the run, or built the same way (CodiEsp code priors included) when the run has none."""
    from builder.stages.data import build
    from models.contract import note_from_messages

    overrides = [f"data.codiesp={small_codiesp}", "data.synthetic_train=2",
                 "data.synthetic_validation=5", "data.candidates=5", "data.tokenizer=none"]
    cfg = load_config(None, overrides)
    cfg.run_dir = str(tmp_path / "run")
    build.run(cfg)
    rows = [json.loads(line) for line in
            (tmp_path / "run/data/validation.jsonl").read_text().splitlines()]
    stage = [(r["id"], note_from_messages(r["prompt"]), [c["code"] for c in r["codes"]])
             for r in rows if r["source"] == "synthetic-validation"]
    assert len(stage) == 5

    def as_tuples(notes):
        return [(n.note_id, n.text, n.gold_raw) for n in notes]

    assert as_tuples(evaluate.load_notes("synthetic-val", cfg)) == stage
    fresh = load_config(None, overrides)
    fresh.run_dir = str(tmp_path / "no-data-stage")
    assert as_tuples(evaluate.load_notes("synthetic-val", fresh)) == stage
