"""`python -m builder data`: every source -> train/validation JSONL of contract examples + report.

Sources: the CodiEsp cases (train -> train, dev -> validation), synthetic notes from the code set,
and optionally a hub dataset. Every example is built by models.contract, with the candidate codes
models.retrieve finds for its note, so training sees exactly what inference will show the model.
"""
from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from builder.config import BuildConfig
from builder.manifest import record_stage
from builder.stages.data import codiesp, hub
from builder.stages.data.codes import OUTCOMES, map_codes
from builder.stages.data.report import write_report
from builder.stages.data.synthetic import SyntheticNoteGenerator, codiesp_prior
from builder.stages.retriever import cross_fitted, for_run
from models import codeset as codeset_mod
from models.contract import CodedItem, training_example
from models.evidence import best_clause
from models.files import write_jsonl_atomic
from models.retrieve import Retriever
from models.text import locate


@dataclass
class Source:
    """Notes from one place, with gold codes before mapping."""

    name: str
    records: list[dict] = field(default_factory=list)  # id, group, note, raw_codes, split?, items?
    stats: dict = field(default_factory=dict)


def group_split(group: str, seed: int, fraction: float) -> str:
    """Seeded, stable assignment of a whole group (one case, one note) to a side."""
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return "validation" if int.from_bytes(digest[:8], "big") / 2**64 < fraction else "train"


def _codiesp_sources(cfg, stats: dict) -> list[Source]:
    root = codiesp.embedded_dir() if cfg.codiesp == "embedded" else Path(cfg.codiesp)
    split_dirs = [d for d in (root / "train", root / "dev") if d.is_dir()] or [root]
    sources = []
    for d in split_dirs:
        split = codiesp.read_split(d)
        fixed = {"train": "train", "dev": "validation"}.get(d.name)
        src = Source(f"codiesp-{split.name}")
        for case in split.cases:
            src.records.append({"id": case.case_id, "group": f"codiesp:{case.case_id}",
                                "note": case.text, "raw_codes": case.codes, "split": fixed})
        src.stats = {"cases": len(split.cases),
                     "cases_without_codes": sum(not c.codes for c in split.cases),
                     "tsv_ids_without_text": len(split.codes_without_text)}
        sources.append(src)
    stats["codiesp_root"] = str(root)
    return sources


def _synthetic_sources(cfg, cs, prior: Counter) -> list[Source]:
    gen = SyntheticNoteGenerator(cs, seed=cfg.seed, prior=prior)
    out = []
    for split, n, offset in (("train", cfg.synthetic_train, 0),
                             ("validation", cfg.synthetic_validation, 10_000_000)):
        src = Source(f"synthetic-{split}")
        for i in range(n):
            note = gen.generate(offset + i)
            src.records.append({"id": note.note_id, "group": note.note_id, "note": note.text,
                                "raw_codes": [it.code for it in note.items], "split": split,
                                "items": note.items, "not_coded": note.not_coded})
        src.stats = {"notes": n}
        out.append(src)
    return out


def code_prior(sources: list[Source], cs) -> Counter:
    """The code frequencies synthetic notes draw from: CodiEsp train's (never dev's)."""
    return codiesp_prior((rec["raw_codes"] for src in sources if src.name == "codiesp-train"
                          for rec in src.records), cs)


def synthetic_validation_source(dcfg, cs) -> Source:
    """The stage's synthetic validation notes alone, built as `run` builds them (same generator,
    seed and CodiEsp priors), for evaluating on them when a run has no data stage output."""
    sources = _codiesp_sources(dcfg, {}) if dcfg.codiesp != "none" else []
    validation_only = replace(dcfg, synthetic_train=0)
    return next(src for src in _synthetic_sources(validation_only, cs, code_prior(sources, cs))
                if src.name == "synthetic-validation")


def _evidence(note: str, code: str, cs, retrieved: dict) -> str:
    if code in retrieved:
        r = retrieved[code]
        return note[r.start:r.end]
    span = best_clause(note, cs.description(code))
    return note[span[0]:span[1]] if span else ""


def _retrievers(source: Source, cs, shipped: Retriever) -> list[Retriever]:
    """The retriever for each record. The run's one learned from CodiEsp train, so train cases
    get one fitted without their own fold: their candidates are as good as on unseen notes."""
    if source.name != "codiesp-train" or not shipped.neighbours:
        return [shipped] * len(source.records)
    texts = [r["note"] for r in source.records]
    gold = [map_codes(r["raw_codes"], cs, note=r["note"])[0] for r in source.records]
    out: list[Retriever] = [shipped] * len(texts)
    weights = {k: shipped.model[k] for k in ("weights", "bias", "threshold") if k in shipped.model}
    for held, model in cross_fitted(texts, gold):
        fold = Retriever(cs, {**model, **weights})
        for i in held:
            out[i] = fold
    return out


def build_examples(source: Source, cs, cfg, outcome_counts: Counter,
                   retriever: Retriever) -> tuple[list[dict], dict]:
    examples, found, total, unusable_cases = [], 0, 0, 0
    retrievers = _retrievers(source, cs, retriever)
    for rec, retriever in tqdm(list(zip(source.records, retrievers)), desc=f"data: {source.name}",
                               unit="note", leave=False):
        usable, outcomes = map_codes(rec["raw_codes"], cs, outcome_counts, note=rec["note"])
        retrieved = {r.code: r for r in retriever.retrieve(rec["note"], k=max(cfg.candidates, 1))}
        candidates = list(retrieved.values())[:cfg.candidates]
        given = {it.code: it.evidence for it in rec.get("items", [])}
        items = []
        for code in usable:
            quote = given.get(code) or _evidence(rec["note"], code, cs, retrieved)
            if quote and not locate(rec["note"], quote):
                quote = ""
            items.append(CodedItem(code, " ".join(quote.split())))
        if rec["raw_codes"] and not usable:
            unusable_cases += 1
        total += len(usable)
        found += sum(c.code in usable for c in candidates)
        ex = training_example(rec["note"], items, candidates if cfg.candidates else None)
        ex.update({
            "id": rec["id"], "source": source.name, "group": rec["group"],
            "split": rec.get("split") or group_split(rec["group"], cfg.seed, cfg.validation_fraction),
            "codes": [{"code": i.code, "evidence": i.evidence} for i in items],
            "code_outcomes": [{"raw": o.raw, "outcome": o.outcome, "code": o.code}
                              for o in outcomes if o.outcome != "billable"],
            "not_coded": rec.get("not_coded", []),
            "candidates": [{"code": c.code, "description": c.description} for c in candidates],
        })
        examples.append(ex)
    stats = {"examples": len(examples), "gold_codes": total,
             "gold_in_candidates": round(found / total, 4) if total else None,
             "cases_with_no_usable_code": unusable_cases}
    return examples, stats


def run(cfg: BuildConfig) -> dict:
    started = time.perf_counter()
    dcfg = cfg.data
    run_dir = Path(cfg.run_dir)
    out_dir = run_dir / "data"
    cs = codeset_mod.load()
    retriever = for_run(run_dir, cs)  # the run's fitted ranker, the one its bundle will carry
    stats: dict = {"sources": {}}
    sources: list[Source] = []
    if dcfg.codiesp != "none":
        sources += _codiesp_sources(dcfg, stats)
    if dcfg.synthetic_train or dcfg.synthetic_validation:
        sources += _synthetic_sources(dcfg, cs, code_prior(sources, cs))
    if dcfg.hub_dataset:
        rows, hub_stats = hub.read_rows(dcfg.hub_dataset, dcfg.hub_split, dcfg.hub_limit,
                                        dcfg.hub_columns)
        src = Source("hub", stats=hub_stats)
        for row in rows:
            if not row.codes:
                hub_stats["rows_without_codes"] = hub_stats.get("rows_without_codes", 0) + 1
                continue  # nothing to learn from; counted in the report
            src.records.append({"id": row.row_id, "group": row.row_id, "note": row.note,
                                "raw_codes": row.codes})
        sources.append(src)
    if not sources:
        raise ValueError("No data source: enable CodiEsp, synthetic notes or a hub dataset.")

    splits: dict[str, list[dict]] = {"train": [], "validation": []}
    for src in sources:
        outcome_counts: Counter = Counter()
        examples, ex_stats = build_examples(src, cs, dcfg, outcome_counts, retriever)
        for ex in examples:
            splits[ex["split"]].append(ex)
        stats["sources"][src.name] = {
            **src.stats, **ex_stats,
            "code_outcomes": {k: outcome_counts.get(k, 0) for k in OUTCOMES},
        }
    outputs = []
    for split, rows in splits.items():
        path = out_dir / f"{split}.jsonl"
        write_jsonl_atomic(path, rows)
        outputs.append(path)
    outputs += write_report(out_dir, splits, stats, dcfg, cfg.base_model)
    seconds = time.perf_counter() - started
    record_stage(run_dir, "data", cfg.to_dict()["data"],
                 {"codeset": cs.edition, "codeset_source": cs.source_version,
                  "codiesp": stats.get("codiesp_root"), "hub": dcfg.hub_dataset or None},
                 outputs, seconds)
    return {"run_dir": str(run_dir), "train": len(splits["train"]),
            "validation": len(splits["validation"]), "seconds": round(seconds, 1),
            "outputs": [str(p) for p in outputs]}
