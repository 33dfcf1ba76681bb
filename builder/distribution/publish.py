"""`python -m builder publish --repo-id USER/NAME`: a coder bundle on the Hugging Face Hub.

The published folder, built first in `<run>/publish` (or --out), is the bundle itself plus its
model card, so a download is a bundle the app loads as it is (`python -m desktop --bundle DIR`):

    README.md                  the model card: base model, data with credits, metrics, use, limits
    bundle.json                contract, code set, provenance, metrics, sha256 of every file
    retriever.json.gz          the candidate ranker the model was trained with
    merged/                    the merged model (transformers: from_pretrained(repo, subfolder="merged"))
    gguf/*.gguf, gguf/Modelfile                         llama.cpp / Ollama / LM Studio
    onnx/fp32/, onnx/int8/                              ONNX Runtime

The bundle's checksums are verified when it is loaded, so a file changed or half-written since
the build is refused. `--dry-run` builds the folder and stops
(no network). The token comes from huggingface_hub's usual places (HF_TOKEN, `hf auth login`) and is
never printed.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from builder.base_gemma import GEMMA
from builder.base_model import EMBEDDED
from builder.evaluation.report import system_name
from models.bundle import BUNDLE_FILE, Bundle
from models.codeset import EDITION
from models.errors import CoderError
from models.files import atomic_dir, link_or_copy

EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
# base_model -> (hub id, the card's license tag, the credit line): a model trained from a base
# carries that base's license. Any other base: "other", and its own license applies.
BASE_LICENSES = {
    EMBEDDED: (EMBEDDED_HUB_ID, "apache-2.0", "Apache-2.0"),
    GEMMA: ("google/gemma-3-270m", "gemma",
            "Gemma Terms of Use, https://ai.google.dev/gemma/terms; they apply to this model too"),
}
CODIESP_CREDIT = (
    "CodiEsp corpus (CLEF eHealth 2020): Miranda-Escalada A., Gonzalez-Agirre A., Armengol-Estapé "
    "J., Krallinger M. \"Overview of automatic clinical coding: annotations, guidelines, and "
    "solutions for non-English clinical cases at CodiEsp track of CLEF eHealth 2020\". Corpus: "
    "Zenodo 10.5281/zenodo.3693570, gold standard: Zenodo 10.5281/zenodo.3837305. CC BY 4.0.")


class PublishError(CoderError, RuntimeError):
    """Nothing was published; the message says what to do."""


def _metric_rows(metrics: dict) -> list[dict]:
    rows = []
    for _, m in sorted(metrics.items()):
        if "micro_f1" in m:
            rows.append({"data": m["data"].removeprefix("codiesp:builder/corpora/"),
                         "model": system_name(m) if m["system"].startswith("verifier:")
                         else _model_label(m.get("label") or m["system"]), "notes": m["n_notes"],
                         "micro_f1": m["micro_f1"], "precision": m["micro_precision"],
                         "recall": m["micro_recall"], "p50_s": m.get("latency_p50_s")})
    return rows


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def _model_label(label: str) -> str:
    path = Path(label.split(":", 1)[1] if label.startswith(("llama.cpp:", "onnx:")) else label)
    return f"onnx/{path.name}" if path.parent.name == "onnx" else path.name


def _generative_intro(base_id: str) -> list[str]:
    return [f"A small language model fine-tuned (LoRA, then merged) from [{base_id}]"
            f"(https://huggingface.co/{base_id}) to suggest {EDITION} diagnosis codes for a clinical "
            "note, choosing among candidate codes its retriever proposes; the app then finds the "
            "words in the note that support each code. It is the model behind an offline desktop "
            "app: it is meant to run on the coder's own computer, and no note leaves it."]


def _verifier_intro(base_id: str) -> list[str]:
    return [f"A small language model fine-tuned (LoRA, then merged) from [{base_id}]"
            f"(https://huggingface.co/{base_id}) to judge {EDITION} diagnosis codes: the bundle's "
            "retriever proposes candidate codes for a clinical note, and the model reads the note "
            "followed by one line per candidate (`CODE description ->`) in one forward pass; the "
            "margin logit(\" yes\") - logit(\" no\") at the end of each line is its verdict. A "
            "logistic stacker in `bundle.json` combines that margin with the ranker's features into "
            "the probability shown, and its threshold selects the codes. It is the model behind an "
            "offline desktop app: it is meant to run on the coder's own computer, and no note "
            "leaves it."]


def _generative_limits() -> list[str]:
    return ["- The model sees up to 20 candidate codes retrieved from the code set and answers JSON "
            "with the codes only (`{\"codes\": [\"E11.22\", \"I10\"]}`); the app finds the "
            f"supporting words in the note, validates every code against {EDITION} and flags codes "
            "that are not billable, lack evidence or conflict (Excludes1).",
            *_data_limits(),
            "- It writes few codes per note (recall is low); retrieval alone scores higher on "
            "CodiEsp. Do not use it for automated billing or any decision about a patient.", ""]


def _verifier_limits(bundle: Bundle) -> list[str]:
    behind = ([f"- **The bundle runs the retriever alone by default**: on the train cases it never "
               f"trained on, this model did not beat it ({bundle.provenance['default_system']['why']}). "
               "The model is published for those who would measure or train it further."]
              if bundle.default_system == "retrieval" and "default_system" in bundle.provenance else [])
    return [*behind, "- It can only confirm codes the retriever proposes (its 40 best candidates): a code "
            f"the retriever misses is never suggested. The app validates every code against "
            f"{EDITION}, finds the supporting words in the note and flags codes that are not "
            "billable, lack evidence or conflict (Excludes1).",
            *_data_limits(),
            "- On CodiEsp it adds little to the retriever alone (see Evaluation). Do not use it for "
            "automated billing or any decision about a patient.", ""]


def _data_limits() -> list[str]:
    return ["- English notes only. Trained on literature case reports and synthetic notes, not on "
            "real encounter notes of any hospital: expect lower accuracy on other styles."]


def _verifier_training(summary: dict) -> str:
    auc = summary.get("holdout_auc", {})
    f1 = summary.get("holdout_micro_f1", {})
    return (f"{summary.get('steps', '?')} steps over {summary.get('train_cases', '?')} CodiEsp train "
            f"cases, each with the candidates of a retriever that never saw it; loss on the decision "
            f"slots only. On the {summary.get('holdout_cases', '?')} train cases held out for the "
            f"stacker: AUC {auc.get('ranker', '?')} for the ranker, {auc.get('verifier', '?')} for "
            f"the verifier alone; micro-F1 (cross-validated) {f1.get('ranker_alone_at_its_threshold', '?')} "
            f"for the ranker alone, {f1.get('stacked_cross_validated', '?')} stacked with the verifier.")


def model_card(repo_id: str, bundle: Bundle, files: dict) -> str:
    data = bundle.provenance.get("data", {})
    base = bundle.provenance.get("base_model", EMBEDDED)
    base_id, license_tag, license_line = BASE_LICENSES.get(
        base, (base, "other", "its own license applies to this model too"))
    summary = bundle.provenance.get("train_summary", {})
    lora_r = bundle.provenance.get("lora", {}).get("r", "?")
    ggufs = sorted(p for p in files if p.endswith(".gguf"))
    default_gguf = next((p for p in ggufs if "Q4_K_M" in p), ggufs[0] if ggufs else None)
    # CodiEsp trained the model (data stage or verifier); credited also when it only fitted the
    # retriever.
    trained_on_codiesp = bool(data.get("codiesp")) or "codiesp-train" in bundle.provenance.get("trained_on", [])
    credit_codiesp = trained_on_codiesp or "codiesp" in (bundle.retriever.fitted_on or "")
    sources = []
    if trained_on_codiesp:
        sources.append(f"  - Real clinical case reports from CodiEsp (English translation, train "
                       f"split), re-coded to {EDITION} where codes changed. Credit: {CODIESP_CREDIT}")
    if data.get("synthetic_train"):
        sources.append(f"  - {data['synthetic_train']} synthetic notes written from the {EDITION} "
                       "code set (descriptions, inclusion terms), by this project's generator.")
    if data.get("hub_dataset"):
        sources.append(f"  - Hub dataset `{data['hub_dataset']}` (split {data.get('hub_split', 'train')}).")
    rows = _metric_rows(bundle.metrics)
    table = ["| data | model | notes | micro-F1 | precision | recall | s/note |",
             "|---|---|---:|---:|---:|---:|---:|"]
    table += [f"| {r['data']} | {r['model']} | {r['notes']} | {r['micro_f1']:.3f} | "
              f"{r['precision']:.3f} | {r['recall']:.3f} | {_seconds(r['p50_s'])} |" for r in rows]
    verifier = bundle.verifier is not None
    front = ["---", f"license: {license_tag}", f"base_model: {base_id}", "language:", "- en",
             "pipeline_tag: text-generation", "library_name: transformers",
             "tags:", "- icd-10-cm", "- medical-coding", "- clinical", "- gguf", "- onnx", "---"]
    lines = [
        *front, "",
        f"# {repo_id.split('/')[-1]}: ICD-10-CM coding {'verifier' if verifier else 'assistant model'}", "",
        *(_verifier_intro(base_id) if verifier else _generative_intro(base_id)), "",
        "## Intended use and limits", "",
        "- **Suggestions for a trained medical coder to review**, never final codes. Every code "
        "must be checked against the note and the official guidelines.",
        *(_verifier_limits(bundle) if verifier else _generative_limits()),
        "## Files", "",
        "| file | for |", "|---|---|",
        "| `bundle.json`, `retriever.json.gz` | the coder bundle: the app loads this folder as it is |",
        "| `merged/` | transformers (`AutoModelForCausalLM.from_pretrained(repo, subfolder=\"merged\")`) |",
        *[f"| `{p}` | llama.cpp, LM Studio{', Ollama (`gguf/Modelfile`)' if p == default_gguf else ''} |"
          for p in ggufs],
        *[f"| `onnx/{k}/` | ONNX Runtime ({k}) |" for k in ("fp32", "int8") if f"onnx/{k}/model.onnx" in files],
        "",
        "## Training", "",
        f"- Base model: `{base_id}`. LoRA r={lora_r} on all linear layers; "
        + (_verifier_training(summary) if verifier else
           f"{summary.get('steps', '?')} steps, {summary.get('train_examples', '?')} training "
           f"examples, best validation loss {summary.get('best_eval_loss', float('nan')):.3f}."),
        "- Data:", *sources, "",
        "## Evaluation", "",
        "Micro-F1 of the codes against human gold codes (CodiEsp dev: real case reports; "
        "synthetic-val: held-out synthetic notes), as measured by `python -m builder evaluate`.", "",
        *(table if rows else ["No evaluation was recorded for this build."]), "",
        "## Use", "",
        "```bash",
        f"hf download {repo_id} --local-dir icd10",
        *(["ollama create icd10-coder -f icd10/gguf/Modelfile        # Ollama",
           f"llama-server -m icd10/{default_gguf} --port 8080   # OpenAI-compatible server"]
          if default_gguf else []),
        "```", "",
        "`AutoModelForCausalLM.from_pretrained(\"icd10\", subfolder=\"merged\")` loads the merged "
        "model in transformers; `python -m desktop --bundle icd10` runs the whole bundle. "
        + ("The model is not a chat model: the app builds its input (the note, then the candidate "
           "lines) and reads the margins at the decision slots, or, through a server, one generated "
           "token's top log-probabilities per candidate; used bare, it needs the same input (the "
           "project's `models/contract.py`, verifier input version "
           f"{bundle.verifier.contract if verifier else ''}) and the stacker in `bundle.json`."
           if verifier else
           "The desktop app of this project (`python -m desktop --model icd10/gguf/...gguf`) builds "
           "the prompt with the candidate codes and validates the answer; used bare, the model needs "
           "the same prompt (see `bundle.json` and the project's `models/contract.py`)."), "",
        "## Credits and licenses", "",
        f"- Base model: {base_id} ({license_line}).",
        f"- {EDITION}: the official code set (public domain, CDC/NCHS), through `simple-icd-10-cm`.",
        *([f"- {CODIESP_CREDIT}"] if credit_codiesp else []), "",
    ]
    return "\n".join(lines)


def published_files(bundle: Bundle) -> dict[str, tuple[Path, str]]:
    """Repo path -> (file, sha256): every file of the bundle (verified when it was loaded)."""
    return {rel: (bundle.path(rel), entry["sha256"]) for rel, entry in sorted(bundle.files.items())}


def published_bundle_json(bundle: Bundle) -> str:
    """bundle.json with the builder machine's paths left out."""
    meta = bundle.to_json()
    meta["metrics"] = {k: {m: v for m, v in row.items() if m != "bundle"} for k, row in meta["metrics"].items()}
    text = json.dumps(meta, indent=2, ensure_ascii=False)
    root = bundle.root
    for prefix, short in ((f"{root.resolve()}/", ""), (f"{root}/", ""), (f"{root.parent.resolve()}/", ""),
                          (f"{root.parent}/", ""), (str(Path.home()), "~")):
        text = text.replace(json.dumps(prefix)[1:-1], short)
    return text + "\n"


def build_folder(bundle: Bundle, repo_id: str, out: str | Path) -> Path:
    out = Path(out)
    if not bundle.models:
        raise PublishError(f"The bundle {bundle.root} has no model (retrieval only): build one with "
                           "`make all` before publishing.")
    files = published_files(bundle)
    with atomic_dir(out) as tmp:
        for rel, (path, _) in files.items():
            link_or_copy(path, tmp / rel)
        (tmp / "README.md").write_text(model_card(repo_id, bundle, files), encoding="utf-8")
        (tmp / BUNDLE_FILE).write_text(published_bundle_json(bundle), encoding="utf-8")
    return out


def publish(bundle: Bundle, repo_id: str, out: str | Path, dry_run: bool = False,
            private: bool = False) -> dict:
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise PublishError(f"--repo-id must be USER/NAME (or ORG/NAME), not {repo_id!r}.")
    started = time.perf_counter()
    folder = build_folder(bundle, repo_id, out)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    result = {"folder": str(folder), "files": sum(1 for p in folder.rglob("*") if p.is_file()),
              "bytes": size, "repo_id": repo_id, "dry_run": dry_run}
    if dry_run:
        result["seconds"] = round(time.perf_counter() - started, 1)
        return result
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    api = HfApi()
    try:
        user = api.whoami()["name"]  # fails fast without a token; the token itself is never shown
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="model",
                                   commit_message="Upload ICD-10-CM coder model (builder publish)")
    except LocalTokenNotFoundError as exc:
        raise PublishError("No Hugging Face token: run `hf auth login` or set HF_TOKEN. "
                           f"The folder is ready in {folder}.") from exc
    except HfHubHTTPError as exc:
        raise PublishError(f"The Hub refused the upload: {exc}. The folder is ready in {folder}.") from exc
    except Exception as exc:  # noqa: BLE001 - no network: requests or httpx errors, by version
        raise PublishError(f"Could not reach the Hub ({type(exc).__name__}). The folder is ready "
                           f"in {folder}; publish again when online.") from exc
    result.update({"user": user, "url": str(url), "commit": getattr(commit, "oid", None),
                   "seconds": round(time.perf_counter() - started, 1)})
    return result
