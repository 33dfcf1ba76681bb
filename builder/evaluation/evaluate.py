"""`python -m builder evaluate`: run the suggestion pipeline over a note set and score it.

Gold codes are normalized, then brought to FY2026 as the data stage does: billable codes as
written, unambiguous successors for codes split since (R51 -> R51.9), and the normalized code as
written for the rest (codes that now need a 7th character, have several successors or no longer
exist). The pipeline only returns FY2026 codes, so that last group can only be missed: it is the
ceiling on recall reported as `gold_not_billable_share`.
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tqdm import tqdm

from builder.config import BuildConfig
from builder.evaluation.scoring import RULES, recall_at, score
from builder.manifest import record_stage, run_lock
from builder.plots import pyplot, save_png
from builder.stages.data import codiesp
from builder.stages.data.codes import map_code
from models import bundle as bundle_mod
from models import codeset as codeset_mod
from models.codeset import InvalidCodeFormat, normalize
from models.contract import note_from_messages
from models.errors import CoderError
from models.files import write_json_atomic, write_jsonl_atomic, write_text_atomic
from models.pipeline import Flag, Pipeline, open_bundle_selector
from models.rules import REASONS as RULE_REASONS

# The flags of codes the coding rules brought in, not the selector.
ADDED_BY_RULES = frozenset({Flag.COMBINATION, Flag.STATED, Flag.ADDITIONAL, Flag.LONG_TERM, Flag.ENCOUNTER,
                            Flag.HISTORY})


class EvalDataError(CoderError, ValueError):
    pass


@dataclass
class GoldNote:
    note_id: str
    text: str
    gold_raw: list[str]


def _stored_synthetic_validation(run_dir: str) -> list[GoldNote]:
    """The synthetic notes of the run's validation set (<run>/data/validation.jsonl), if any."""
    path = Path(run_dir) / "data" / "validation.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [GoldNote(r["id"], note_from_messages(r["prompt"]), [c["code"] for c in r["codes"]])
            for r in rows if r.get("source") == "synthetic-validation"]


def _built_synthetic_validation(cfg: BuildConfig) -> list[GoldNote]:
    """The same notes for a run without a data stage output: built by the data stage's own code
    (its code-frequency priors change which codes the notes are about)."""
    from builder.stages.data.build import synthetic_validation_source

    source = synthetic_validation_source(cfg.data, codeset_mod.load())
    # .strip(): the stage's prompts hold the note stripped (models.contract.user_message).
    return [GoldNote(r["id"], r["note"].strip(), r["raw_codes"]) for r in source.records]


def load_notes(spec: str, cfg: BuildConfig) -> list[GoldNote]:
    if spec.startswith("codiesp:"):
        split = codiesp.read_split(spec.split(":", 1)[1])
        return [GoldNote(c.case_id, c.text, c.codes) for c in split.cases]
    if spec == "synthetic-val":
        return _stored_synthetic_validation(cfg.run_dir) or _built_synthetic_validation(cfg)
    if spec == "clinic":  # the US clinic notes shipped with the builder (builder/corpora/clinic)
        spec = str(resources.files("builder") / "corpora" / "clinic" / "notes.jsonl")
        if not Path(spec).is_file():
            raise EvalDataError(f"The clinic note set is missing: {spec}.")
    path = Path(spec)
    if path.suffix == ".jsonl" and path.exists():
        notes = []
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            text = row.get("note") or row.get("text")
            if text is None and row.get("prompt"):  # a data-stage example: the note is in the prompt
                text = note_from_messages(row["prompt"])
            codes = row.get("codes", [])
            codes = [c["code"] if isinstance(c, dict) else c for c in codes]
            if not text:
                raise EvalDataError(f"{path}:{lineno}: no `note`, `text` or `prompt` field.")
            notes.append(GoldNote(str(row.get("id", lineno)), text, codes))
        return notes
    raise EvalDataError(f"Unknown --data {spec!r}: use codiesp:FOLDER, synthetic-val, clinic or a .jsonl file.")


def gold_codes(raw: list[str], cs) -> tuple[list[str], int]:
    """FY2026 gold codes (see module docstring) and how many raw codes had a bad format."""
    out, bad = [], 0
    for r in raw:
        outcome = map_code(r, cs)
        if outcome.code:
            out.append(outcome.code)
            continue
        try:
            out.append(normalize(r))
        except InvalidCodeFormat:
            bad += 1
    return list(dict.fromkeys(out)), bad


def data_key(spec: str) -> str:
    """The note set's name as bundles record which data saw which choice (codiesp-dev, ...)."""
    if spec.startswith("codiesp:"):
        return f"codiesp-{Path(spec.split(':', 1)[1]).name}"
    return spec if spec in ("synthetic-val", "clinic") else Path(spec).stem


def choices_seen(choices: list[dict], data: str) -> list[str]:
    """The choices (threshold, checkpoint, ...) made with these notes: empty means held out."""
    return [c["choice"] for c in choices if data_key(data) in c.get("data", [])]


def _parts(cfg: BuildConfig, bundle: str | None, system: str):
    """(bundle or None, retriever, runtime spec) for an evaluation."""
    from builder.stages.retriever import for_run
    from models.bundle import BUNDLE_FILE, RUN_BUNDLE, resolve

    cs = codeset_mod.load()
    if bundle or (Path(cfg.run_dir) / RUN_BUNDLE / BUNDLE_FILE).is_file():
        found = resolve(bundle, cfg.run_dir)
        return found, found.load_retriever(cs), found.runtime_spec(system, with_torch=True)
    if system == "bundle":
        raise EvalDataError(f"{cfg.run_dir} has no bundle: run `python -m builder bundle` first, "
                            "or give --bundle.")
    return None, for_run(cfg.run_dir, cs), system


def run(cfg: BuildConfig, data: str, system: str, out_dir: str | None = None, limit: int = 0,
        candidates: int = 20, no_candidates: bool = False, max_tokens: int = 384,
        threads: int = 0, allow_remote: bool = False, bundle: str | None = None,
        coding_rules: bool = True, served_verifier: bool = False) -> dict:
    started = time.perf_counter()
    cs = codeset_mod.load()
    notes = load_notes(data, cfg)
    if limit:
        notes = notes[:limit]
    label = system
    used_bundle, retriever, system = _parts(cfg, bundle, system)
    if system == "base":
        from builder.base_model import ensure_base_model

        system = ensure_base_model(cfg.base_model)
    options = {"threads": threads} if threads and system != "retrieval" else {}
    selector = open_bundle_selector(used_bundle, system, served_verifier, candidates=candidates,
                                    use_candidates=not no_candidates, max_tokens=max_tokens,
                                    **({"allow_remote": allow_remote, **options} if system != "retrieval" else {}))
    pipeline = Pipeline(selector, cs, retriever, coding_rules=coding_rules)
    choices = (used_bundle.provenance.get("choices", []) if used_bundle
               else [{"choice": "retriever L2 and threshold", "data": ["codiesp-train"]}])
    if used_bundle and used_bundle.model_for_path(system) is None:
        choices = [c for c in choices if c["choice"].startswith("retriever")]  # not the bundle's model
    rows, latencies, bad_gold, invalid, predicted_total = [], [], 0, 0, 0
    for note in tqdm(notes, desc=f"evaluate {Path(system).name}", unit="note"):
        gold, bad = gold_codes(note.gold_raw, cs)
        bad_gold += bad
        t0 = time.perf_counter()
        result = pipeline.suggest(note.text)
        latencies.append(time.perf_counter() - t0)
        pred = result.codes
        n_invalid = sum(r.reason in (Flag.NOT_IN_CODESET, "bad_format") for r in result.rejected)
        invalid += n_invalid
        predicted_total += len(pred) + n_invalid
        rows.append({
            "id": note.note_id, "gold": gold, "predicted": pred,
            "flags": {s.code: s.flags for s in result.suggestions if s.flags},
            "rejected": [r.__dict__ for r in result.rejected],
            "candidates": [c.code for c in result.candidates],
            "seconds": round(latencies[-1], 3), "warnings": result.warnings,
        })
    all_gold = [c for r in rows for c in r["gold"]]
    n_pred = sum(len(r["predicted"]) for r in rows)
    metrics = {
        "data": data, "system": selector.name, "label": label, "with_candidates": not no_candidates,
        "coding_rules": coding_rules,
        "candidates_in_prompt": 0 if no_candidates else candidates, "n_notes": len(rows),
        "bundle": str(used_bundle.root) if used_bundle else None,
        "choices_seen": choices_seen(choices, data),  # empty: held out from every choice
        "scoring": RULES,
        **score(rows),
        # The same run scored as if the coding rules had neither dropped nor added anything
        # (CodiEsp's annotators code every mention, symptoms beside their diagnosis included,
        # and code I10 beside N18 rather than I12).
        "micro_f1_without_coding_rules": score([
            {"gold": r["gold"],
             "predicted": [c for c in r["predicted"] if not ADDED_BY_RULES & set(r["flags"].get(c, []))]
             + [x["raw"] for x in r["rejected"] if x["reason"] in RULE_REASONS]}
            for r in rows])["micro_f1"],
        "invalid_rate": round(invalid / predicted_total, 4) if predicted_total else 0.0,
        "non_billable_rate": round(sum(Flag.NOT_BILLABLE in f for r in rows for f in r["flags"].values())
                                   / n_pred, 4) if n_pred else 0.0,
        "model_bytes": model_bytes(system),
        "pred_codes_per_note": round(n_pred / len(rows), 3) if rows else 0.0,
        "gold_codes_per_note": round(len(all_gold) / len(rows), 3) if rows else 0.0,
        "gold_not_billable_share": round(sum(not cs.is_billable(c) for c in all_gold) / len(all_gold), 4)
        if all_gold else 0.0,
        "gold_bad_format": bad_gold,
        "latency_p50_s": round(statistics.median(latencies), 3) if latencies else 0.0,
        "latency_p95_s": round(sorted(latencies)[max(int(0.95 * len(latencies)) - 1, 0)], 3)
        if latencies else 0.0,
        **{f"recall_at_{k}": recall_at([r["candidates"] for r in rows], [r["gold"] for r in rows], k)
           for k in (10, 20, 50)},
        "seconds": round(time.perf_counter() - started, 1),
    }
    selector.close()
    out = Path(out_dir or Path(cfg.run_dir) / "eval" / (
        _slug(data, label, no_candidates) + ("" if coding_rules else "__no-rules")))
    outputs = [out / "metrics.json", out / "predictions.jsonl", out / "report.md", out / "report.png"]
    write_json_atomic(outputs[0], metrics)
    write_jsonl_atomic(outputs[1], rows)
    write_text_atomic(outputs[2], _report(metrics))
    _plot(outputs[3], metrics)
    if Path(cfg.run_dir).exists() or out_dir is None:
        record_stage(Path(cfg.run_dir), f"evaluate:{out.name}", {"data": data, "system": system},
                     {"codeset": cs.edition}, [p for p in outputs if _inside(p, cfg.run_dir)],
                     metrics["seconds"], {"metrics": metrics})
    if used_bundle and _inside(used_bundle.root, cfg.run_dir):
        _record_in_bundle(Path(cfg.run_dir), used_bundle, out.name, metrics)
    return metrics


def _record_in_bundle(run_dir: Path, evaluated: bundle_mod.Bundle, name: str, metrics: dict) -> None:
    """Add the figures to bundle.json as it is now (another evaluation may have added its own
    since this one began), and only if it is still the bundle evaluated: one rebuilt meanwhile
    keeps no figures of the one before. The files and their checksums are unchanged."""
    with run_lock(run_dir):
        current = bundle_mod.read(evaluated.root)
        if current.created_at != evaluated.created_at:
            print(f"evaluate: {evaluated.root} was rebuilt during this evaluation; these figures "
                  "are not recorded in it (they stay in the evaluation's own folder).")
            return
        current.metrics[name] = {k: v for k, v in metrics.items() if k != "scoring"}
        current.save()


def model_bytes(system: str) -> int:
    """Size on disk of what the runtime loads (0 for retrieval or a hub id)."""
    path = Path(system)
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir()
                   if p.suffix in (".onnx", ".onnx_data", ".safetensors", ".bin"))
    return 0


def _inside(path: Path, run_dir: str) -> bool:
    try:
        path.resolve().relative_to(Path(run_dir).resolve())
        return True
    except ValueError:
        return False


def _slug(data: str, system: str, no_candidates: bool) -> str:
    d = "codiesp-" + Path(data.split(":", 1)[1]).name if data.startswith("codiesp:") else Path(data).stem
    path = Path(system.rstrip("/"))
    s = system if system in ("retrieval", "base") else (
        f"onnx-{path.name}" if (path / "model.onnx").exists() else path.name)
    return f"{d}__{s}{'__no-candidates' if no_candidates else ''}"


def _report(m: dict) -> str:
    keys = ["n_notes", "micro_precision", "micro_recall", "micro_f1", "micro_f1_without_coding_rules",
            "macro_f1",
            "category_micro_f1", "exact_match", "invalid_rate", "non_billable_rate",
            "pred_codes_per_note", "gold_codes_per_note", "gold_not_billable_share",
            "recall_at_10", "recall_at_20", "recall_at_50", "latency_p50_s", "latency_p95_s"]
    lines = [f"# Evaluation: {m['system']} on {m['data']}", "",
             f"Candidates in the prompt: {m['candidates_in_prompt']}.", "",
             "| metric | value |", "|---|---:|"]
    lines += [f"| {k} | {m[k]} |" for k in keys]
    seen = m.get("choices_seen") or []
    lines += ["", "Held out: " + ("yes, these notes made none of the bundle's choices." if not seen
                                  else "NO, in-sample: these notes made these choices: "
                                  + "; ".join(seen) + "."),
              "", f"Scoring: {m.get('scoring', RULES)} Predictions are the pipeline's suggestions, "
              "which are always FY2026 codes; `invalid_rate` counts what the model wrote that was "
              "not.", "", "![metrics](report.png)", ""]
    return "\n".join(lines)


def _plot(path: Path, m: dict) -> None:
    plt = pyplot()

    names = ["micro_precision", "micro_recall", "micro_f1", "macro_f1", "category_micro_f1",
             "recall_at_10", "recall_at_20", "recall_at_50"]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    bars = ax.bar(range(len(names)), [m[n] for n in names],
                  color=["#4c72b0"] * 5 + ["#dd8452"] * 3)
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_xticks(range(len(names)), [n.replace("_", "\n") for n in names], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_title(f"{Path(m['system']).name} on {Path(m['data']).name} (n={m['n_notes']}): "
                 "codes (blue), candidates (orange)", fontsize=9)
    fig.tight_layout()
    save_png(fig, path)
