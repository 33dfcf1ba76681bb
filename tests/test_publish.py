"""`python -m builder publish`: the folder and model card, offline (--dry-run), and its refusals."""
import json
import shutil

import pytest

from builder.distribution import publish
from builder.stages import export
from models import bundle as bundle_mod

from .conftest import run_module


@pytest.fixture
def built_run(tiny_bundle, tmp_path):
    """A copy of the tiny run as `make all` leaves it (bundle included), one evaluation recorded."""
    run = tmp_path / "run"
    shutil.copytree(tiny_bundle.root.parent, run)
    b = bundle_mod.read(run / "bundle")
    b.metrics["codiesp-dev__bundle"] = {
        "data": "codiesp:builder/corpora/codiesp/dev", "system": f"llama.cpp:{run}/bundle/gguf/x.gguf",
        "label": str(run / "bundle/gguf/icd10-coder-Q4_K_M.gguf"), "n_notes": 2, "micro_f1": 0.25,
        "micro_precision": 0.5, "micro_recall": 0.1667, "latency_p50_s": 0.31, "bundle": str(run / "bundle")}
    b.save()
    return run


def test_dry_run_builds_the_folder_and_a_complete_model_card(built_run, tmp_path, cs):
    out = tmp_path / "publish"
    proc = run_module("builder", "publish", "--run-dir", str(built_run), "--repo-id",
                      "someone/icd10-tiny", "--dry-run", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["dry_run"] is True
    assert (out / "merged/model.safetensors").is_file() and (out / "merged/config.json").is_file()
    assert (out / "gguf/icd10-coder-Q4_K_M.gguf").read_bytes() == \
        export.gguf_path(built_run, "Q4_K_M").read_bytes()
    assert (out / "retriever.json.gz").is_file()
    assert "FROM ./icd10-coder-Q4_K_M.gguf" in (out / "gguf/Modelfile").read_text()
    card = (out / "README.md").read_text()
    front = card.split("---")[1]
    assert "license: apache-2.0" in front and "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in front
    assert "Zenodo 10.5281/zenodo.3693570" in card and "CC BY 4.0" in card  # the CodiEsp credit
    assert "| codiesp/dev | icd10-coder-Q4_K_M.gguf | 2 | 0.250 | 0.500 | 0.167 | 0.3 |" in card
    assert "Intended use and limits" in card and "never final codes" in card
    assert 'subfolder="merged"' in card
    # The published folder is itself a bundle the app loads, checksums and all.
    published = bundle_mod.load(out, cs)
    assert published.files["gguf/icd10-coder-Q4_K_M.gguf"]["sha256"] == \
        json.loads((built_run / "manifest.json").read_text())["stages"]["export"]["outputs"][
            "gguf/icd10-coder-Q4_K_M.gguf"]["sha256"]
    assert str(built_run) not in (out / "bundle.json").read_text()  # no builder-machine paths


def test_a_verifier_bundles_card_says_what_the_model_does_and_credits_its_data(built_run):
    """A verifier judges the retriever's candidates: its card says so, gives the held-out figures
    of its training, names the system in the evaluation table and credits CodiEsp, which trained
    it even though no data stage ran."""
    b = bundle_mod.read(built_run / "bundle")
    b.verifier = bundle_mod.VerifierPart(
        contract=1, stacker={"inputs": ["ranker_logit"], "weights": [1.0], "bias": 0.0, "threshold": 0.5},
        fitted_on="codiesp train (397 cases, out-of-fold candidates)", tuned_on="codiesp train held-out part")
    b.provenance.update(data={}, trained_on=["codiesp-train"], train_summary={
        "steps": 32, "train_cases": 397, "holdout_cases": 101,
        "holdout_auc": {"ranker": 0.84, "verifier": 0.62},
        "holdout_micro_f1": {"ranker_alone_at_its_threshold": 0.427, "stacked_cross_validated": 0.433}})
    b.metrics = {"codiesp-dev__bundle": {
        "data": "codiesp:builder/corpora/codiesp/dev", "label": "bundle", "n_notes": 100,
        "system": f"verifier:llama.cpp:{built_run}/bundle/gguf/icd10-coder-Q4_K_M.gguf",
        "micro_f1": 0.426, "micro_precision": 0.488, "micro_recall": 0.379, "latency_p50_s": 2.7}}
    card = publish.model_card("someone/icd10-verifier", b, publish.published_files(b))
    assert "coding verifier" in card and "one line per candidate" in card
    assert "AUC 0.84 for the ranker, 0.62 for the verifier alone" in card
    assert "| codiesp/dev | verifier GGUF Q4_K_M (llama.cpp) over the ranker | 100 | 0.426 |" in card
    assert "Zenodo 10.5281/zenodo.3693570" in card and "best validation loss" not in card
    assert "retriever alone by default" not in card
    # A verifier that did not beat retrieval on its held-out cases says so on its card.
    b.default_system = "retrieval"
    b.provenance["default_system"] = {"system": "retrieval", "why": "verifier Q4_K_M 0.5598, retrieval alone 0.5628"}
    card = publish.model_card("someone/icd10-verifier", b, publish.published_files(b))
    assert "**The bundle runs the retriever alone by default**" in card and "0.5628" in card


@pytest.mark.parametrize("base, front, credit", [
    ("embedded:gemma3-270m", "license: gemma\nbase_model: google/gemma-3-270m", "Gemma Terms of Use"),
    ("meta-llama/Meta-Llama-3-8B-Instruct", "license: other\nbase_model: meta-llama/Meta-Llama-3-8B-Instruct",
     "its own license applies"),
])
def test_a_card_carries_the_license_of_the_base_its_model_was_trained_from(built_run, base, front, credit):
    """A model trained from Gemma or Llama 3 is not Apache-2.0: the card says whose terms apply."""
    b = bundle_mod.read(built_run / "bundle")
    b.provenance["base_model"] = base
    card = publish.model_card("someone/icd10", b, publish.published_files(b))
    assert front in card.split("---")[1] and credit in card and "Apache-2.0" not in card


def test_a_file_changed_since_the_build_is_not_published(built_run, tmp_path):
    gguf = built_run / "bundle/gguf/icd10-coder-Q4_K_M.gguf"
    gguf.write_bytes(gguf.read_bytes()[:1000])  # truncated after export
    proc = run_module("builder", "publish", "--run-dir", str(built_run), "--repo-id", "someone/x",
                      "--dry-run", "--out", str(tmp_path / "out"))
    assert proc.returncode == 1 and "damaged" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_publish_without_a_token_says_how_to_log_in(built_run, tmp_path):
    proc = run_module("builder", "publish", "--run-dir", str(built_run), "--repo-id", "someone/x",
                      "--out", str(tmp_path / "out"),
                      env={"HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": "", "HF_HUB_OFFLINE": "0"})
    assert proc.returncode == 1 and "hf auth login" in proc.stderr and "HF_TOKEN" in proc.stderr
    assert (tmp_path / "out/README.md").is_file()  # the folder is ready for a later try


def test_publish_needs_a_repo_id_and_a_build(tmp_path):
    assert run_module("builder", "publish", "--run-dir", str(tmp_path)).returncode == 2
    with pytest.raises(publish.PublishError, match="USER/NAME"):
        publish.publish(bundle_mod.embedded(), "no-slash", tmp_path / "out", dry_run=True)
    with pytest.raises(publish.PublishError, match="make all"):
        publish.publish(bundle_mod.embedded(), "a/b", tmp_path / "out", dry_run=True)
    proc = run_module("builder", "publish", "--run-dir", str(tmp_path), "--repo-id", "a/b", "--dry-run")
    assert proc.returncode == 1 and "No coder bundle" in proc.stderr
