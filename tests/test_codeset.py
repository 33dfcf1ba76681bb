"""The FY2026 code set: what the app's look-up panel and the validator rely on."""
import json
import os
import sys

import pytest

from models import codeset
from models.codeset import InvalidCodeFormat, UnknownCode, normalize

from .conftest import ROOT, run_module


@pytest.mark.parametrize("raw", ["e119", "E11.9", " e11.9 ", "E119", "e11.9\n"])
def test_normalize_accepts_the_spellings_coders_type(raw):
    assert normalize(raw) == "E11.9"


def test_normalize_keeps_short_and_long_codes():
    assert normalize("i10") == "I10"
    assert normalize("s72001a") == "S72.001A"


@pytest.mark.parametrize("raw", ["", "banana", "11.9", "E1", "E11.99999", "E11..9", "E 11.9", None, 119])
def test_normalize_rejects_garbage_with_a_message(raw):
    with pytest.raises(InvalidCodeFormat, match="ICD-10-CM code"):
        normalize(raw)


def test_edition_and_size(cs):
    assert cs.edition == "ICD-10-CM FY2026"
    assert int(cs.meta["n_billable"]) == 74719
    assert len(cs.all_codes()) == 74719


def test_validity_and_billability(cs):
    assert cs.is_valid("E11.22") and cs.is_billable("e1122")
    assert cs.is_valid("E11") and not cs.is_billable("E11")  # a category header
    assert cs.is_valid("S72.001") and not cs.is_billable("S72.001")  # needs a 7th character
    assert cs.is_billable("S72.001A")
    assert not cs.is_valid("E11.99") and not cs.is_billable("E11.99")
    assert not cs.is_valid("garbage") and not cs.is_billable("garbage")
    # R51 was split after 2018 into R51.0 and R51.9.
    assert not cs.is_billable("R51") and cs.is_billable("R51.9")


def test_description_and_unknown_code(cs):
    assert cs.description("e1122") == "Type 2 diabetes mellitus with diabetic chronic kidney disease"
    with pytest.raises(UnknownCode, match="not a code in ICD-10-CM FY2026"):
        cs.description("E11.99")


def test_hierarchy(cs):
    assert cs.ancestors("E11.22") == ["E11.2", "E11"]
    assert cs.ancestors("E11.22", include_groups=True) == ["E11.2", "E11", "E08-E13", "4"]
    assert cs.children("E11.2") == ["E11.21", "E11.22", "E11.29"]
    assert cs.billable_descendants("R51") == ["R51.0", "R51.9"]
    assert cs.billable_descendants("I10") == ["I10"]
    # A one-category block shares its name with the category: the category wins, no loop.
    assert cs.ancestors("B10.01") == ["B10.0", "B10"]


def test_excludes1_pairs_and_conflicts(cs):
    notes = cs.excludes1("E11.9")
    assert any(n.source == "E11" and "E10" in n.note for n in notes)
    conflict = cs.excludes1_conflict("E11.9", "E10.65")
    assert conflict is not None and "type 1 diabetes" in conflict.note
    assert cs.excludes1_conflict("E10.65", "E11.9") is not None  # symmetric
    assert cs.excludes1_conflict("E11.9", "I10") is None


def test_inclusion_terms(cs):
    assert "Facial pain NOS" in cs.inclusion_terms("R51.9")


def test_notes_of_a_kind_are_what_each_record_holds(cs):
    # The combination-code rules read every category's Includes notes through this one query.
    notes = cs.notes_of("includes", "category")
    by_code: dict[str, list[str]] = {}
    for code, text in notes:
        by_code.setdefault(code, []).append(text)
    assert by_code["I12"] == cs.record("I12").includes and "I12" in by_code
    assert all(cs.record(code).kind == "category" for code in list(by_code)[::50])
    position = {c: i for i, c in enumerate(cs.all_codes(billable_only=False))}
    ordered = [position[c] for c in by_code]
    assert ordered == sorted(ordered)  # code order, as the rules' "most needs first" relies on
    for code in ("I10", "I11", "I13", "E11", "N18", "J44"):
        assert by_code.get(code, []) == cs.record(code).includes


def test_descriptions_containing_finds_text_in_any_case_and_literally(cs):
    # The laterality rule learns which body parts have sides from these descriptions.
    found = dict(cs.descriptions_containing("LEFT KNEE"))
    assert found["M25.562"] == "Pain in left knee" and "M25.561" not in found
    assert all("left knee" in d.lower() for d in found.values())
    # % and _ are not wildcards: "100%-200% displacement" is found, "1_0%" is not.
    assert cs.descriptions_containing("100%") and all("100%" in d for _, d in cs.descriptions_containing("100%"))
    assert cs.descriptions_containing("1_0%") == [] and cs.descriptions_containing("left%knee") == []


def test_record_has_everything_the_lookup_panel_shows(cs):
    rec = cs.record("E11.22")
    assert rec.billable and rec.parent == "E11.2" and rec.children == []
    assert any("N18" in n for n in rec.use_additional_code)
    assert cs.record("S72").seven_chr_def["A"].startswith("initial encounter")


def test_search_ranks_the_right_code_first(cs):
    hits = cs.search("type 2 diabetes mellitus with diabetic chronic kidney disease")
    assert "E11.22" in [h.code for h in hits[:3]]
    assert cs.search("type 2 diabetes with kidney disease")[0].code == "E11.22"
    assert cs.search("essential hypertension")[0].code == "I10"


def test_a_bare_condition_ranks_its_unspecified_code_first(cs):
    """A note that says just "pneumonia" is coded J18.9 (Pneumonia, unspecified organism), not
    typhoid pneumonia: "unspecified organism" and words in parentheses (ICD-10-CM's nonessential
    modifiers) are not words the note must have."""
    hits = cs.search("pneumonia", billable_only=True)
    assert hits[0].code == "J18.9" and hits[0].covered == 1.0
    assert {"A01.03", "A02.22"}.isdisjoint(h.code for h in hits[:2])
    assert cs.search("splenomegaly")[0].code == "R16.1"
    # "Renal insufficiency (acute)": the parenthesized word is not asked of the note.
    assert cs.search("renal insufficiency", billable_only=True)[0].code == "N28.9"


def test_search_by_code_lists_the_code_and_its_descendants(cs):
    codes = [h.code for h in cs.search("e11.2")]
    assert codes == ["E11.2", "E11.21", "E11.22", "E11.29"]


def test_search_handles_empty_and_hostile_queries(cs):
    assert cs.search("") == [] and cs.search("   ") == []
    assert cs.search("the of and") == []
    # FTS5 operators and quotes must be treated as words, not syntax.
    assert isinstance(cs.search('chest" OR pain NEAR( AND * ^'), list)
    assert cs.search("x" * 10000) == []


@pytest.mark.parametrize("phrases", [
    ["pneumonia"],
    ["chronic kidney", "diabetes", "stage"],  # a two-word phrase
    ["kidneys", "kidney", "renal"],  # two phrases of one token
    ["type 2 diabetes mellitus", "neuropathy"],
    ["left"],  # 16,000 entries: many of one length tie
    ["fracture", "radius", "distal", "displaced"],
    ["migraine", "without aura", "intractable"],
    ["zzzz"],  # nothing holds it
])
def test_search_ranks_as_fts5s_own_bm25(cs, phrases):
    """The search's ranking (models/codeset/_bm25.py) gives what FTS5's `ORDER BY rank` gives:
    the same 400 entries, the same scores to the last bit, ties in the same order."""
    query = " OR ".join(f'"{p}"' for p in phrases)
    expected = cs._con.execute("SELECT rowid, rank FROM search_fts WHERE search_fts MATCH ? "
                               "ORDER BY rank LIMIT 400", (query,)).fetchall()
    rows, ranks = cs._ranking.top(phrases, 400)
    assert list(zip(rows.tolist(), ranks.tolist())) == expected
    for phrase in phrases:
        assert cs._ranking.doc_freq(phrase) == cs._con.execute(
            "SELECT count(*) FROM search_fts WHERE search_fts MATCH ?", (f'"{phrase}"',)).fetchone()[0]


def test_billable_only_search(cs):
    assert all(h.billable for h in cs.search("headache", billable_only=True))


def test_distal_and_proximal_find_the_code_sets_lower_and_upper_end(cs):
    """ICD-10-CM writes "lower end"/"upper end" of a long bone where a note writes distal and
    proximal; "distal phalanx" is the code set's own wording and is still found as such."""
    def codes(query):
        return [h.code for h in cs.search(query, billable_only=True)[:5]]

    assert "S52.501A" in codes("Closed displaced fracture of distal right radius, initial encounter")
    assert codes("Closed fracture of proximal left humerus, initial encounter")[0].startswith("S42.2")
    assert codes("Fracture of distal left tibia, initial encounter for closed fracture")[0].startswith("S82.3")
    assert codes("displaced fracture of distal phalanx of right thumb, initial encounter")[0] == "S62.521A"


def test_tumor_and_cancer_find_the_code_sets_neoplasm(cs):
    """The Alphabetic Index sends "tumor" to Neoplasm, unspecified behavior and "carcinoma" and
    "cancer" to Neoplasm, malignant: a note's words find the Tabular List's descriptions."""
    def codes(query):
        return [h.code for h in cs.search(query, billable_only=True)[:3]]

    assert codes("prostate cancer")[0] == "C61"  # Malignant neoplasm of prostate
    assert codes("transitional cell carcinoma of the bladder")[0] == "C67.9"
    assert "D49.511" in codes("tumor of the right kidney")  # unspecified behavior, right kidney
    assert codes("Carcinoma in situ of bladder")[0] == "D09.0"  # the code set's own wording still first


def test_a_clinic_notes_words_find_the_code_sets_own(cs):
    """What a note writes and the code set names otherwise: a plural in -oses is its -osis
    ("keratoses"), the colon and the sigmoid are the large intestine, low back pain is lumbago
    (M54.50 includes "Lumbago NOS"), secondhand smoke is "second hand tobacco smoke"."""
    def codes(query, n=3):
        return [h.code for h in cs.search(query, billable_only=True)[:n]]

    assert codes("Actinic keratoses")[0] == "L57.0"
    assert codes("Seborrheic keratoses, benign")[0] == "L82.1"
    assert "K57.32" in codes("Sigmoid diverticulitis without bleeding", 2)
    assert "M54.42" in codes("Low back pain with left-sided sciatica", 6)
    assert codes("Exposure to secondhand smoke")[0] == "Z77.22"


def test_cli_record_json():
    out = run_module("models.codeset", "e1122", "--json")
    assert out.returncode == 0, out.stderr
    rec = json.loads(out.stdout)
    assert rec["code"] == "E11.22" and rec["billable"] and rec["edition"] == "ICD-10-CM FY2026"


def test_cli_search_prints_ranked_codes():
    out = run_module("models.codeset", "search",
                     "type 2 diabetes mellitus with diabetic chronic kidney disease")
    assert out.returncode == 0
    top3 = [line.split()[1] for line in out.stdout.splitlines()[:3]]
    assert "E11.22" in top3


def test_cli_bad_code_says_what_is_wrong():
    out = run_module("models.codeset", "banana")
    assert out.returncode == 1
    assert "not an ICD-10-CM code" in out.stderr and "Traceback" not in out.stderr


def test_cache_is_compiled_once_and_opened_without_the_source_package(tmp_path):
    env = {"ICD10_CODER_CACHE": str(tmp_path)}
    script = ("import sys, models.codeset as c; cs = c.load(); "
              "print(cs.path.name, 'simple_icd_10_cm' in sys.modules)")
    import subprocess

    def run():
        return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                              text=True, env={**os.environ, **env})
    first, second = run(), run()
    assert first.returncode == 0, first.stderr
    name, imported = first.stdout.split()
    assert name.startswith("codeset-simple-icd-10-cm-1.5.0") and imported == "True"  # compiled
    assert second.stdout.split() == [name, "False"]  # reused, source package not imported
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temp files left behind


def test_schema_mismatch_is_a_clear_error(tmp_path, cs):
    import shutil
    import sqlite3

    copy = tmp_path / "old.sqlite"
    shutil.copy(cs.path, copy)
    with sqlite3.connect(copy) as con:
        con.execute("UPDATE meta SET value = '0' WHERE key = 'schema'")
    with pytest.raises(codeset.CodeSetError, match="Delete it"):
        codeset.CodeSet(copy)


def test_cli_search_json():
    out = run_module("models.codeset", "search", "essential hypertension", "--json", "--limit", "3")
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout)
    assert len(hits) == 3 and hits[0]["code"] == "I10" and hits[0]["description"]


def test_a_leg_is_the_code_sets_lower_limb_and_an_arm_its_upper_limb(cs):
    """ICD-10-CM writes "lower limb" in its skin and soft tissue codes and "leg" in its
    musculoskeletal ones; notes write either, or "lower extremity"."""
    def codes(query):
        return [h.code for h in cs.search(query, billable_only=True)[:3]]

    assert codes("Cellulitis of the left lower leg")[0] == "L03.116"
    assert codes("cellulitis of right lower extremity")[0] == "L03.115"
    assert codes("Cellulitis of left arm")[0] == "L03.114"
    assert codes("pain in left lower limb")[0] == "M79.605"  # the code set's "Pain in left leg"


def test_a_side_after_a_comma_finds_the_sided_code(cs):
    """"..., right ear, without rupture of the eardrum": H66.001 says "without spontaneous rupture
    of ear drum, right ear"; the ear it names outside "without" is not an ear it says is absent."""
    hits = [h.code for h in cs.search("Acute suppurative otitis media, right ear, without rupture of the eardrum",
                                      billable_only=True)]
    assert hits[0] == "H66.001"
    assert [h.code for h in cs.search("Swimmer's ear, left ear", billable_only=True)][0] == "H60.332"


def test_the_retriever_reads_a_condition_with_the_side_written_after_it(cs):
    from models.retrieve import Retriever

    found = Retriever(cs).lexical("Assessment: Acute otitis externa (swimmer's ear), left ear.\n")
    assert found["H60.332"]["cover"] == 1.0
