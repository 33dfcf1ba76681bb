"""The US clinic note set (builder/corpora/clinic): well formed, FY2026 billable gold, loadable."""
import itertools
import json
import re

import pytest

from builder.config import load_config
from builder.evaluation import evaluate

from .conftest import ROOT

NOTES = ROOT / "builder" / "corpora" / "clinic" / "notes.jsonl"


def _rows() -> list[dict]:
    return [json.loads(line) for line in NOTES.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def rows():
    return _rows()


def test_rows_are_well_formed(rows):
    assert 105 <= len(rows) <= 250
    for row in rows:
        assert set(row) == {"id", "note", "codes", "why"}, row.get("id")
        assert re.fullmatch(r"clinic-\d{3}", row["id"]), row["id"]
        assert isinstance(row["note"], str) and row["note"].strip(), row["id"]
        assert 80 <= len(row["note"].split()) <= 300, row["id"]
        assert isinstance(row["codes"], list) and row["codes"], row["id"]
        assert len(row["codes"]) == len(set(row["codes"])), f"{row['id']}: a code twice"
        assert isinstance(row["why"], str) and row["why"].strip(), row["id"]


def test_ids_are_unique(rows):
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))


def test_every_gold_code_is_billable_in_fy2026(rows, cs):
    assert cs.edition == "ICD-10-CM FY2026"
    for row in rows:
        for code in row["codes"]:
            # Written as coders write them: the normalized form, so scoring needs no mapping.
            assert cs.normalize(code) == code, f"{row['id']}: {code!r} is not in normalized form"
            assert cs.is_valid(code), f"{row['id']}: {code} is not an FY2026 code"
            assert cs.is_billable(code), f"{row['id']}: {code} is not billable in FY2026"


def test_no_note_pairs_codes_that_excludes1_forbids(rows, cs):
    for row in rows:
        for a, b in itertools.combinations(row["codes"], 2):
            assert not cs.excludes1_conflict(a, b), f"{row['id']}: {a} and {b} are Excludes1"


def test_the_set_tests_the_rules_it_claims(rows):
    """The README's coding rules have gold that shows them (a gold edit that drops one fails)."""
    gold = {r["id"]: set(r["codes"]) for r in rows}
    all_codes = set().union(*gold.values())
    # combination codes with their "use additional code"
    assert {"E11.22", "N18.4"} <= gold["clinic-001"]
    assert {"I13.0", "I50.32", "N18.31"} == gold["clinic-007"]
    assert {"N39.0", "B96.20"} == gold["clinic-008"]
    assert "J44.1" in gold["clinic-009"]
    # the most specific code
    assert {"I48.21", "G43.009", "S52.532A"} <= all_codes
    # integral symptoms are not coded beside their diagnosis
    assert gold["clinic-003"] == {"J18.9"}
    # uncertain outpatient diagnoses are coded as symptoms
    assert gold["clinic-011"] == {"R11.2", "R19.7"}
    assert gold["clinic-035"] == {"R51.9"}
    # long-term drug use where stated; not for type 1 diabetes
    assert {"Z79.4", "Z79.01"} <= all_codes and gold["clinic-037"] == {"E10.10"}
    # family history only where relevant
    assert "Z80.0" in gold["clinic-012"] and not any(c.startswith("Z80") for c in gold["clinic-025"])
    # a combination the code set's Excludes1 points to (CAD with stable angina); an adverse effect
    # of a drug taken as prescribed, the effect first; a normal pregnancy's prenatal visit
    assert "I25.118" in gold["clinic-100"] and not {"I25.10", "I20.89"} & gold["clinic-100"]
    assert {"E87.1", "T50.2X5A"} <= gold["clinic-103"]
    assert gold["clinic-099"] == {"Z34.01", "Z3A.12"}


def test_load_notes_reads_the_clinic_set(rows, tmp_path):
    cfg = load_config(None, [])
    cfg.run_dir = str(tmp_path / "run")  # the set does not depend on a run
    notes = evaluate.load_notes("clinic", cfg)
    assert [(n.note_id, n.text, n.gold_raw) for n in notes] == [(r["id"], r["note"], r["codes"]) for r in rows]
    assert evaluate.data_key("clinic") == "clinic"


def test_gold_needs_no_fy2026_mapping(rows, cs):
    for row in rows:
        gold, bad = evaluate.gold_codes(row["codes"], cs)
        assert (gold, bad) == (row["codes"], 0), row["id"]
