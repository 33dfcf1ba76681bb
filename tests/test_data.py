"""Training data: CodiEsp read and mapped to FY2026, synthetic notes, hub rows, the data stage."""
import json
from collections import Counter

import pytest

from builder.config import ConfigError, load_config
from builder.stages.data import build, hub
from builder.stages.data.codes import (
    AMBIGUOUS,
    BAD_FORMAT,
    KEPT,
    MAPPED_ONLY_CHILD,
    MAPPED_UNSPECIFIED,
    NEEDS_7TH,
    UNKNOWN,
    map_code,
    map_codes,
)
from builder.stages.data.codiesp import CorpusError, read_split
from builder.stages.data.synthetic import SyntheticNoteGenerator
from models.contract import build_messages, note_from_messages, parse_answer
from models.files import sha256_file
from models.text import locate

from .conftest import run_module


# --- CodiEsp -------------------------------------------------------------------------------
def test_embedded_codiesp_is_complete(embedded_codiesp):
    train, dev = read_split(embedded_codiesp / "train"), read_split(embedded_codiesp / "dev")
    assert (len(train.cases), len(dev.cases)) == (500, 250)
    assert sum(len(c.codes) for c in train.cases) == 5639
    assert sum(len(c.codes) for c in dev.cases) == 2677
    assert not train.codes_without_text and not dev.codes_without_text
    assert (embedded_codiesp / "README.md").read_text().count("CC BY 4.0") >= 1


@pytest.mark.parametrize("raw, outcome, code", [
    ("e11.9", KEPT, "E11.9"),
    ("r51", MAPPED_UNSPECIFIED, "R51.9"),          # split into R51.0 / R51.9 after 2018
    ("m54.5", MAPPED_UNSPECIFIED, "M54.50"),
    ("r05", MAPPED_UNSPECIFIED, "R05.9"),
    ("t14.90", NEEDS_7TH, None),                   # now needs a 7th character: ambiguous
    ("w19.xxx", NEEDS_7TH, None),                  # placeholders written, 7th character missing
    ("r74.0", AMBIGUOUS, None),                    # two different billable children
    ("e11.99", UNKNOWN, None),
    ("zz", BAD_FORMAT, None),
])
def test_2018_codes_are_mapped_or_flagged(cs, raw, outcome, code):
    result = map_code(raw, cs)
    assert (result.outcome, result.code) == (outcome, code)


def test_only_billable_descendant_is_mapped(cs):
    # A non-billable code with exactly one billable code below it maps to that code.
    found = [c for c in cs.all_codes(billable_only=False)[:20000]
             if not cs.is_billable(c) and len(cs.billable_descendants(c)) == 1][:1]
    assert found
    assert map_code(found[0], cs).outcome == MAPPED_ONLY_CHILD


def test_mapping_counts_every_code(cs, embedded_codiesp):
    counter = Counter()
    for case in read_split(embedded_codiesp / "dev").cases:
        map_codes(case.codes, cs, counter)
    assert sum(counter.values()) == 2677  # nothing silently dropped
    assert counter[KEPT] / 2677 > 0.9


def test_codiesp_folder_errors_say_what_to_do(tmp_path):
    with pytest.raises(CorpusError, match="not a folder"):
        read_split(tmp_path / "missing")
    (tmp_path / "split").mkdir()
    with pytest.raises(CorpusError, match="text_files_en"):
        read_split(tmp_path / "split")
    (tmp_path / "split" / "text_files_en").mkdir()
    (tmp_path / "split" / "text_files_en" / "a.txt").write_bytes("Fiebre y tos. caf\xe9".encode("cp1252"))
    (tmp_path / "split" / "splitD.tsv").write_text("a\tr50.9\nb\ti10\n")
    split = read_split(tmp_path / "split")  # non-UTF-8 text is read, codes without text counted
    assert split.cases[0].codes == ["r50.9"] and "café" in split.cases[0].text
    assert split.codes_without_text == {"b": ["i10"]}
    (tmp_path / "split" / "splitD.tsv").write_text("a-row-without-a-code\n")
    with pytest.raises(CorpusError, match="articleID<TAB>code"):
        read_split(tmp_path / "split")


# --- synthetic -----------------------------------------------------------------------------
def test_synthetic_notes_are_reproducible(cs):
    a = SyntheticNoteGenerator(cs, seed=5).generate(3)
    b = SyntheticNoteGenerator(cs, seed=5).generate(3)
    c = SyntheticNoteGenerator(cs, seed=6).generate(3)
    assert a.text == b.text and a.items == b.items
    assert a.text != c.text


def test_synthetic_notes_look_like_notes_and_code_only_what_is_present(cs):
    gen = SyntheticNoteGenerator(cs, seed=1)
    for i in range(40):
        note = gen.generate(i)
        for section in ("CHIEF COMPLAINT:", "HPI:", "PAST MEDICAL HISTORY:", "ASSESSMENT AND PLAN:"):
            assert section in note.text
        assert 2 <= len(note.items) <= 6 and note.not_coded
        codes = [it.code for it in note.items]
        assert all(cs.is_billable(c) for c in codes)
        assert not set(codes) & set(note.not_coded)  # denied/historical mentions stay uncoded
        for it in note.items:  # evidence is a quote of the note
            assert locate(note.text, it.evidence), (it, note.text)


def test_synthetic_wording_is_abbreviated_and_negated_like_clinicians_write(cs):
    gen = SyntheticNoteGenerator(cs, seed=2, prior=Counter({"I10": 10, "E11.9": 10}))
    texts = "\n".join(gen.generate(i).text for i in range(120))
    assert "HTN" in texts or "T2DM" in texts
    assert any(cue in texts for cue in ("Denies", "No evidence of", "ruled out", "Negative for"))
    assert any(cue in texts for cue in ("resolved", "Family history", "Mother with", "Father had"))


# --- hub dataset ---------------------------------------------------------------------------
def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_hub_rows_with_user_and_codes_columns(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [
        {"user": "Pt with HTN.", "codes": ["I10"]},
        {"user": "T2DM and HTN.", "codes": "E11.9, I10"},
        {"user": "Nothing coded.", "codes": []},
        {"user": "", "codes": ["I10"]},
    ])
    rows, stats = hub.read_rows(str(path))
    assert [r.codes for r in rows] == [["I10"], ["E11.9", "I10"], []]
    assert stats["rows_without_note"] == 1 and stats["note_column"] == "user"


def test_hub_rows_with_prompt_and_completion_columns(tmp_path):
    _write_jsonl(tmp_path / "d.jsonl", [  # read as a folder of .jsonl files
        {"prompt": "Fever and cough.", "completion": '{"codes": [{"code": "R50.9", "evidence": "Fever"}]}'},
        {"prompt": "Headache.", "completion": "R51.9"},
    ])
    rows, stats = hub.read_rows(str(tmp_path))
    assert [r.codes for r in rows] == [["R50.9"], ["R51.9"]]
    assert stats["codes_column"] == "completion"


def test_hub_dataset_without_expected_columns_names_what_it_found(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [{"body": "x", "labels_x": "I10"}])
    with pytest.raises(hub.HubDataError, match=r"\['body', 'labels_x'\].*hub_columns"):
        hub.read_rows(str(path))
    rows, _ = hub.read_rows(str(path), columns="body,labels_x")
    assert rows[0].codes == ["I10"]


def test_hub_id_offline_fails_fast_with_advice(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.HubDataError, match="offline"):
        hub.read_rows("FiscaAI/synth-ehr-icd10cm-prompt")


# --- config --------------------------------------------------------------------------------
def test_cpu_full_is_cpu_default_without_time_limits_and_with_the_lora_verifier():
    # So a run goes on under cpu-full from its checkpoint ("train longer"); cpu-default fits
    # the verifier's decision head, cpu-full trains the LoRA verifier over every case.
    from dataclasses import asdict

    from builder.stages.train import _HOW_LONG

    default, full = asdict(load_config(profile="cpu-default")), asdict(load_config(profile="cpu-full"))
    assert (default["verifier"]["method"], full["verifier"]["method"]) == ("head", "lora")
    for section in ("train", "verifier"):
        assert full[section]["time_budget_minutes"] == 0.0 < default[section]["time_budget_minutes"]
        assert ({k: v for k, v in full[section].items() if k not in (*_HOW_LONG, "method")}
                == {k: v for k, v in default[section].items() if k not in (*_HOW_LONG, "method")})
    assert full["evaluate"]["limit"] == 0  # every dev note at the end of `all`
    assert {k: v for k, v in full.items() if k not in ("train", "verifier", "evaluate")} == {
        k: v for k, v in default.items() if k not in ("train", "verifier", "evaluate")}


def test_config_overrides_are_typed_and_checked(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('run_dir = "x"\n[data]\nseed = 3\nsynthetic_train = 4\n')
    cfg = load_config(toml, ["data.seed=9", "data.validation_fraction=0.25"])
    assert (cfg.run_dir, cfg.data.seed, cfg.data.synthetic_train, cfg.data.validation_fraction) == ("x", 9, 4, 0.25)
    with pytest.raises(ConfigError, match="unknown config key"):
        load_config(None, ["data.sed=1"])
    with pytest.raises(ConfigError, match="expected int"):
        load_config(None, ["data.seed=many"])


# --- the stage -----------------------------------------------------------------------------
def test_group_split_is_seeded_and_stable():
    sides = [build.group_split(f"case-{i}", 13, 0.2) for i in range(1000)]
    assert sides == [build.group_split(f"case-{i}", 13, 0.2) for i in range(1000)]
    assert 150 < sides.count("validation") < 250
    assert sides != [build.group_split(f"case-{i}", 14, 0.2) for i in range(1000)]


def test_data_stage_end_to_end(tmp_path, small_codiesp, cs):
    hub_file = _write_jsonl(tmp_path / "hub.jsonl", [
        {"user": f"Patient {i} with essential hypertension and type 2 diabetes.", "codes": ["I10", "E11.9"]}
        for i in range(20)] + [{"user": "No codes here.", "codes": []},
                               {"user": "Unknown code.", "codes": ["Q99.99", "i10"]}])
    run_dir = tmp_path / "run"
    cfg = load_config(None, [f"data.codiesp={small_codiesp}", "data.synthetic_train=12",
                             "data.synthetic_validation=4", f"data.hub_dataset={hub_file}",
                             "data.validation_fraction=0.3", "data.candidates=10"])
    cfg.run_dir = str(run_dir)
    summary = build.run(cfg)
    train = [json.loads(line) for line in (run_dir / "data/train.jsonl").read_text().splitlines()]
    val = [json.loads(line) for line in (run_dir / "data/validation.jsonl").read_text().splitlines()]
    assert (summary["train"], summary["validation"]) == (len(train), len(val))
    # CodiEsp train -> train, dev -> validation; nothing dropped: 6 + 3 cases, 12 + 4 synthetic.
    count = Counter((ex["source"], ex["split"]) for ex in train + val)
    assert count[("codiesp-train", "train")] == 6 and count[("codiesp-dev", "validation")] == 3
    assert count[("synthetic-train", "train")] == 12 and count[("synthetic-validation", "validation")] == 4
    assert count[("hub", "train")] + count[("hub", "validation")] == 21  # the row without codes is counted, not used
    assert not {ex["group"] for ex in train} & {ex["group"] for ex in val}
    for ex in train + val:
        cands = [type("C", (), c) for c in ex["candidates"]]
        assert len(ex["candidates"]) <= 10
        # The prompt is exactly what inference builds for this note and these candidates.
        note = note_from_messages(ex["prompt"])
        from models.contract import Candidate
        assert ex["prompt"] == build_messages(note, [Candidate(c.code, c.description) for c in cands])
        answer = parse_answer(ex["completion"][0]["content"])
        assert answer.mode == "json" and all(cs.is_billable(c) for c in answer.codes)
        for item in answer.items:
            assert not item.evidence or locate(note, item.evidence)
    unknown = next(ex for ex in train + val if ex["prompt"][1]["content"].count("Unknown code."))
    assert [o["outcome"] for o in unknown["code_outcomes"]] == ["flagged_not_in_fy2026"]
    report = json.loads((run_dir / "data/report.json").read_text())
    assert report["groups_on_both_sides"] == 0
    assert report["sources"]["hub"]["rows_without_codes"] == 1
    assert report["sources"]["codiesp-train"]["code_outcomes"]["billable"] > 0
    assert report["splits"]["train"]["tokens"]["max"] > 100
    assert (run_dir / "data/report.png").stat().st_size > 10_000
    manifest = json.loads((run_dir / "manifest.json").read_text())
    outputs = manifest["stages"]["data"]["outputs"]
    assert outputs["data/train.jsonl"]["sha256"] == sha256_file(run_dir / "data/train.jsonl")
    # Reproducible: the same config writes the same training file.
    cfg.run_dir = str(tmp_path / "run2")
    build.run(cfg)
    assert sha256_file(tmp_path / "run2/data/train.jsonl") == sha256_file(run_dir / "data/train.jsonl")


def test_data_cli_reports_bad_config_and_bad_corpus(tmp_path):
    out = run_module("builder", "data", "--set", "data.nope=1")
    assert out.returncode == 2 and "unknown config key" in out.stderr
    out = run_module("builder", "data", "--run-dir", str(tmp_path), "--set",
                     f"data.codiesp={tmp_path / 'nowhere'}", "--set", "data.tokenizer=none")
    assert out.returncode == 1 and "not a folder" in out.stderr and "Traceback" not in out.stderr


def test_stages_without_a_model_say_what_to_run(tmp_path):
    out = run_module("builder", "serve", "--run-dir", str(tmp_path))
    assert out.returncode == 1 and "No coder bundle" in out.stderr and "make all" in out.stderr
    out = run_module("builder", "export", "--run-dir", str(tmp_path))
    assert out.returncode == 1 and "builder merge" in out.stderr and "Traceback" not in out.stderr
