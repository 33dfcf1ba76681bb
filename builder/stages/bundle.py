"""`python -m builder bundle`: gather a run's retriever and models into its coder bundle.

<run>/bundle/ is built in a temporary folder (files hard-linked, not copied, where the disk
allows), every file checked against the sha256 its stage recorded, and renamed into place whole.
What each part was fitted, tuned and reported on goes into bundle.json (models/bundle.py), so an
evaluation can say whether its notes were held out from every choice or not.
"""
from __future__ import annotations

import time
from pathlib import Path

from builder.config import BuildConfig
from builder.manifest import read as read_manifest
from builder.manifest import record_stage, run_lock
from builder.stages.export import STACKER_SUFFIX
from models import bundle as bundle_mod
from models import codeset as codeset_mod
from models.bundle import RETRIEVER_FILE, RUNTIMES, Bundle, BundleError, BundleModel, RetrieverPart, VerifierPart
from models.contract import CONTRACT_VERSION
from models.files import atomic_dir, link_or_copy, sha256_file

DEFAULT_GGUF = "Q4_K_M"  # the model the app runs unless told otherwise


def bundle_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / bundle_mod.RUN_BUNDLE


def _checked(run_dir: Path, stages: dict, stage: str) -> dict[str, Path]:
    """The stage's outputs that still exist, each verified against its recorded sha256."""
    out = {}
    for rel, entry in stages.get(stage, {}).get("outputs", {}).items():
        path = run_dir / rel
        if not path.is_file():
            continue  # an export removed since
        if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            raise BundleError(f"{path} changed since `builder {stage}` wrote it (sha256 differs): "
                              f"run `python -m builder {stage}` again, then `bundle`.")
        out[rel] = path
    return out


def _models(rels: list[str]) -> list[BundleModel]:
    models: dict[str, BundleModel] = {}
    for rel in rels:
        parts = rel.split("/")
        if rel.endswith(".gguf"):
            variant = Path(rel).stem.rsplit("-", 1)[-1]
            models[rel] = BundleModel(rel, "gguf", variant, RUNTIMES["gguf"], variant == DEFAULT_GGUF)
        elif parts[0] == "onnx" and rel.endswith("/model.onnx"):
            models[str(Path(rel).parent)] = BundleModel(str(Path(rel).parent), "onnx", parts[1], RUNTIMES["onnx"])
        elif parts[0] == "merged" and rel == "merged/config.json":
            models["merged"] = BundleModel("merged", "safetensors", "fp32", RUNTIMES["safetensors"])
    found = list(models.values())
    if found and not any(m.default for m in found):  # no Q4_K_M: the first GGUF, else ONNX
        first = next((m for m in found if m.format == "gguf"), next((m for m in found if m.format == "onnx"), None))
        if first:
            found[found.index(first)] = BundleModel(**{**first.__dict__, "default": True})
    return found


def _verifier(run_dir: Path, stages: dict) -> VerifierPart | None:
    """The verifier part when the merged model is the verifier's (else the models generate)."""
    import json

    if stages.get("merge", {}).get("config", {}).get("model_kind") != "verifier":
        return None
    stacker_path = _checked(run_dir, stages, "verifier").get("verifier/stacker.json")
    if stacker_path is None:
        raise BundleError(f"{run_dir} has a merged verifier but no stacker: run `python -m builder "
                          "verifier` again, then merge, export and bundle.")
    stacker = json.loads(stacker_path.read_text(encoding="utf-8"))
    metrics = stages["verifier"].get("metrics", {})
    own = {rel.removesuffix(STACKER_SUFFIX): json.loads(path.read_text(encoding="utf-8"))
           for rel, path in _checked(run_dir, stages, "export").items() if rel.endswith(STACKER_SUFFIX)}
    return VerifierPart(stacker.pop("contract"), stacker,
                        f"codiesp train ({metrics.get('train_cases', '?')} cases, out-of-fold candidates)",
                        metrics.get("choices_made_on", "codiesp train held-out part"), own)


def default_system(cfg: BuildConfig, stages: dict, verifier: VerifierPart | None,
                   models: list[BundleModel]) -> tuple[str, str]:
    """(what the bundle runs by default, why). With `default_system` "auto", a verifier is the
    default only where, on the held-out train notes, the default model's stacker (fitted on its
    own margins, cross-validated) beat both the ranker alone and the same stacker without the
    verifier: else its gain would be the refit, not the model. Judged on the mean micro-F1 of
    the two kinds of held-out notes, CodiEsp cases and synthetic US-style notes, the mean that
    chose the ranker's and the stacker's thresholds (CodiEsp alone where the build has no
    synthetic figures). A generative model has no such comparison in the build and stays the
    default (README: Accuracy measures it)."""
    if cfg.default_system not in ("auto", *bundle_mod.DEFAULT_SYSTEMS):
        raise BundleError(f"default_system is {cfg.default_system!r}: use auto, model or retrieval.")
    model = next((m for m in models if m.default), None)
    if model is None:
        return "retrieval", "the bundle has no model"
    if cfg.default_system != "auto":
        return cfg.default_system, f"set by default_system={cfg.default_system}"
    if verifier is None:
        return "model", "a generative model (no held-out comparison in the build)"
    metrics = stages.get("verifier", {}).get("metrics", {})
    held = {"codiesp": metrics.get("holdout_micro_f1", {}), "synthetic": metrics.get("holdout_synthetic_micro_f1", {})}
    own = stages.get("export", {}).get("exports", {}).get(model.format, {}).get(
        Path(model.path).name, {}).get("stacker", {})
    # The GGUF's own stacker where the export refitted one, else the full-precision margins'.
    by_kind = own.get("cv_micro_f1_by_kind") or {"codiesp": own.get("cv_micro_f1")}
    mine = {kind: by_kind.get(kind, held[kind].get("stacked_cross_validated")) for kind in held}
    bar = {kind: max(h.get("ranker_alone_at_its_threshold", 0.0),
                     h.get("stacked_without_verifier_cross_validated", 0.0)) for kind, h in held.items() if h}
    kinds = [kind for kind in bar if mine.get(kind) is not None]
    if "codiesp" not in kinds:
        return "retrieval", "no held-out figure for the verifier"
    mean_mine = sum(mine[k] for k in kinds) / len(kinds)
    mean_bar = sum(bar[k] for k in kinds) / len(kinds)
    verdict = "model" if mean_mine > mean_bar else "retrieval"
    what = f"{metrics.get('holdout_cases', '?')} held-out codiesp train cases" + (
        f" and {metrics.get('holdout_synthetic_notes', '?')} synthetic notes" if len(kinds) > 1 else "")
    return verdict, (f"micro-F1 on {what}: verifier {model.variant} {mean_mine:.4f} ("
                     + ", ".join(f"{k} {mine[k]:.4f}" for k in kinds) + f"), retrieval alone (or restacked "
                     f"without the verifier) {mean_bar:.4f} (" + ", ".join(f"{k} {bar[k]:.4f}" for k in kinds) + ")")


def _provenance(cfg: BuildConfig, stages: dict) -> dict:
    data_cfg = stages.get("data", {}).get("config", {})
    train = stages.get("train", {})
    # Each choice, and the note sets it saw: evaluate labels its figures held out or in-sample.
    choices = [{"choice": "retriever L2 and threshold", "data": ["codiesp-train"]}]
    if stages.get("merge", {}).get("config", {}).get("model_kind") == "verifier":
        verifier = stages.get("verifier", {})
        choices.append({"choice": "verifier stacker and threshold", "data": ["codiesp-train"]})
        return {
            "base_model": verifier.get("config", {}).get("base_model", cfg.base_model),
            "retriever": stages.get("retriever", {}).get("metrics", {}).get("fitted_on", "embedded"),
            "trained_on": ["codiesp-train"],
            "train_summary": {k: v for k, v in verifier.get("metrics", {}).items()
                              if k in ("steps", "train_cases", "holdout_cases", "tokens_per_second",
                                       "holdout_micro_f1", "holdout_auc")},
            "lora": verifier.get("config", {}).get("lora", {}),
            "verifier": verifier.get("config", {}).get("verifier", {}),
            "choices": choices,
            "versions": verifier.get("versions", {}),
        }
    if train:
        choices.append({"choice": "training checkpoint (validation loss)",
                        "data": ["codiesp-dev", "synthetic-val"] if data_cfg.get("codiesp", "embedded") != "none"
                        else ["synthetic-val"]})
        # Settled by earlier builds' measurements on CodiEsp dev (README: Export, Benchmark).
        choices.append({"choice": "candidates shown (20) and default GGUF type (Q4_K_M)",
                        "data": ["codiesp-dev"]})
    return {
        "base_model": train.get("config", {}).get("base_model", cfg.base_model),
        "retriever": stages.get("retriever", {}).get("metrics", {}).get("fitted_on", "embedded"),
        "trained_on": ["codiesp-train", "synthetic-train"] + (["hub"] if data_cfg.get("hub_dataset") else [])
        if train else [],
        "train_summary": {k: v for k, v in train.get("summary", {}).items()
                          if k in ("steps", "train_examples", "best_eval_loss", "tokens_per_second")},
        "lora": train.get("config", {}).get("lora", {}),
        "data": {k: v for k, v in data_cfg.items()
                 if k in ("codiesp", "synthetic_train", "hub_dataset", "hub_split", "candidates")},
        "choices": choices,
        "versions": train.get("versions") or stages.get("retriever", {}).get("versions", {}),
    }


def run(cfg: BuildConfig, out: str | Path | None = None, retrieval_only: bool = False) -> dict:
    """Write the run's bundle (default <run>/bundle). `retrieval_only`: the retriever alone, as
    the package ships it (`make embedded-bundle` writes models/resources/bundle this way)."""
    started = time.perf_counter()
    run_dir = Path(cfg.run_dir)
    stages = read_manifest(run_dir)["stages"]
    cs = codeset_mod.load()
    retriever = _checked(run_dir, stages, "retriever").get(f"retriever/{RETRIEVER_FILE}")
    if retriever is None:
        raise BundleError(f"{run_dir} has no fitted retriever: run `python -m builder retriever` "
                          "first (`make all` runs every stage).")
    files = {} if retrieval_only else {**_checked(run_dir, stages, "merge"), **_checked(run_dir, stages, "export")}
    metrics = stages["retriever"].get("metrics", {})
    out = Path(out) if out else bundle_dir(run_dir)
    # An evaluation running meanwhile records its figures in bundle.json under the same lock.
    with run_lock(run_dir), atomic_dir(out) as tmp:
        link_or_copy(retriever, tmp / RETRIEVER_FILE)
        for rel, path in files.items():
            link_or_copy(path, tmp / rel)
        models = _models(sorted(files))
        verifier = None if retrieval_only else _verifier(run_dir, stages)
        system, why = default_system(cfg, stages, verifier, models)
        made = Bundle(
            root=tmp, name=run_dir.name, created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            contract_version=CONTRACT_VERSION,
            codeset={"edition": cs.edition, "source_version": cs.source_version,
                     "sha256": cs.content_sha256()},
            retriever=RetrieverPart(RETRIEVER_FILE, float(metrics.get("threshold", 0.5)),
                                    metrics.get("fitted_on", "codiesp train"),
                                    metrics.get("tuned_on", "codiesp train, out of fold")),
            models=models,
            provenance=_provenance(cfg, {} if retrieval_only else stages) | (
                {"retriever": metrics.get("fitted_on", "codiesp train"), "base_model": None}
                if retrieval_only else {}) | {"default_system": {"system": system, "why": why}},
            files=bundle_mod.checksum_tree(tmp), verifier=verifier, default_system=system)
        made.save()
    made.root = out
    if made.default_system == "retrieval" and made.models:
        print(f"bundle: retrieval alone is the default ({made.provenance['default_system']['why']}); "
              "the models stay selectable.")
    if out.resolve().is_relative_to(run_dir.resolve()):
        record_stage(run_dir, "bundle", {"retrieval_only": retrieval_only}, {"retriever": str(retriever)},
                     [out / bundle_mod.BUNDLE_FILE], time.perf_counter() - started)
    return {"bundle": str(out), "models": [m.path for m in made.models],
            "default": (made.default_model() or BundleModel("-", "", "", "")).path,
            "default_system": made.default_system, "why": why,
            "files": len(made.files), "seconds": round(time.perf_counter() - started, 1)}


def slim_copy(source: Bundle, dest: str | Path, model_paths: list[str]) -> Bundle:
    """A copy of a bundle with only some of its models (the packaged app carries one GGUF)."""
    keep = [m for m in source.models if m.path in model_paths]
    if len(keep) != len(model_paths):
        raise BundleError(f"The bundle {source.root} has no model {set(model_paths) - {m.path for m in keep}}.")
    if keep and not any(m.default for m in keep):
        keep[0] = BundleModel(**{**keep[0].__dict__, "default": True})
    wanted = [source.retriever.path, *model_paths]
    files = {rel: e for rel, e in source.files.items()
             if any(rel == w or rel.startswith(w.rstrip("/") + "/") for w in wanted)}
    dest = Path(dest)
    with atomic_dir(dest) as tmp:
        for rel in files:
            link_or_copy(source.path(rel), tmp / rel)
        copy = Bundle(**{**source.__dict__, "root": tmp, "models": keep, "files": files})
        copy.save()
    copy.root = dest
    return copy


def with_gguf(source: Bundle, dest: str | Path, gguf: str | Path) -> Bundle:
    """A bundle of the source's retriever and a GGUF from elsewhere (e.g. the packaged app with
    a model built outside this project), the GGUF its default model."""
    gguf = Path(gguf)
    rel = f"gguf/{gguf.name}"
    dest = Path(dest)
    with atomic_dir(dest) as tmp:
        link_or_copy(source.path(source.retriever.path), tmp / source.retriever.path)
        link_or_copy(gguf, tmp / rel)
        variant = gguf.stem.rsplit("-", 1)[-1] if "-" in gguf.stem else gguf.stem
        made = Bundle(**{**source.__dict__, "root": tmp, "name": gguf.stem,
                         "models": [BundleModel(rel, "gguf", variant, RUNTIMES["gguf"], True)],
                         "default_system": "model",  # the GGUF asked for is what runs
                         "provenance": {**source.provenance, "model": f"{gguf.name}, built elsewhere"},
                         "metrics": {}, "files": bundle_mod.checksum_tree(tmp)})
        made.save()
    made.root = dest
    return made
