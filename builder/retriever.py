"""`python -m builder retriever`: fit the candidate ranker on CodiEsp train, tune it on dev.

Writes <run>/retriever/retriever-codiesp.json.gz and metrics.json; `--set retriever.install=true`
also replaces the copy the product ships in models/resources/.
"""
from __future__ import annotations

import gzip
import json
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models import codeset as codeset_mod
from models.files import atomic_path, write_json_atomic
from models.retrieve import DEFAULT_MODEL, FEATURES, NeighbourIndex, Retriever

from .config import BuildConfig
from .data import codiesp
from .data.codes import map_codes
from .manifest import record_stage


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 3000, lr: float = 0.5):
    """Plain L2-regularised logistic regression by gradient descent (small, dependency-free)."""
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
        grad = p - y
        w -= lr * (x.T @ grad / len(y) + l2 * w)
        b -= lr * grad.mean()
    return w, b


def recall_at(ranked: list[list[str]], gold: list[list[str]], k: int) -> float:
    hit = sum(len(set(r[:k]) & set(g)) for r, g in zip(ranked, gold))
    return round(hit / max(sum(len(set(g)) for g in gold), 1), 4)


def best_threshold(probs: list[list[tuple[str, float]]], gold: list[list[str]]) -> tuple[float, float]:
    best = (0.5, 0.0)
    for t in np.arange(0.05, 0.95, 0.01):
        tp = fp = fn = 0
        for cand, g in zip(probs, gold):
            pred = {c for c, p in cand if p >= t}
            tp += len(pred & set(g))
            fp += len(pred - set(g))
            fn += len(set(g) - pred)
        f1 = 2 * tp / max(2 * tp + fp + fn, 1)
        if f1 > best[1]:
            best = (round(float(t), 2), round(f1, 4))
    return best


def run(cfg: BuildConfig, install: bool | None = None) -> dict:
    install = cfg.retriever.install if install is None else install
    started = time.perf_counter()
    cs = codeset_mod.load()
    root = codiesp.embedded_dir() if cfg.data.codiesp in ("embedded", "none") else Path(cfg.data.codiesp)
    train, dev = codiesp.read_split(root / "train"), codiesp.read_split(root / "dev")
    gold_train = [map_codes(c.codes, cs)[0] for c in train.cases]
    gold_dev = [map_codes(c.codes, cs)[0] for c in dev.cases]
    prior = Counter(c for g in gold_train for c in g)
    knn = NeighbourIndex.fit([c.text for c in train.cases], gold_train)
    model = {"name": "codiesp-train", "features": list(FEATURES), "prior": dict(prior),
             "neighbours": knn.to_dict()}
    retriever = Retriever(cs, model)

    xs, ys = [], []
    for case, gold in tqdm(list(zip(train.cases, gold_train)), desc="retriever: train features"):
        codes, x, _ = retriever.features(case.text)  # neighbours skip the note itself
        xs.append(x)
        ys.append(np.array([c in gold for c in codes], dtype=np.float64))
    x, y = np.vstack(xs), np.concatenate(ys)
    w, b = fit_logistic(x, y)
    model.update(weights=[round(float(v), 5) for v in w], bias=round(float(b), 5))
    retriever = Retriever(cs, model)

    ranked, probs = [], []
    for case in tqdm(dev.cases, desc="retriever: dev"):
        cands = retriever.retrieve(case.text, k=100)
        ranked.append([c.code for c in cands])
        probs.append([(c.code, c.score) for c in cands])
    threshold, f1 = best_threshold(probs, gold_dev)
    model["threshold"] = threshold
    metrics = {"train_cases": len(train.cases), "dev_cases": len(dev.cases),
               "candidate_pool_positive_rate": round(float(y.mean()), 4),
               "weights": dict(zip(FEATURES, model["weights"])), "bias": model["bias"],
               "threshold": threshold, "dev_micro_f1_at_threshold": f1,
               **{f"dev_recall_at_{k}": recall_at(ranked, gold_dev, k) for k in (10, 20, 50, 100)}}
    out_dir = Path(cfg.run_dir) / "retriever"
    out = out_dir / DEFAULT_MODEL
    with atomic_path(out) as tmp, gzip.open(tmp, "wt", encoding="utf-8") as fh:
        json.dump(model, fh, separators=(",", ":"))
    write_json_atomic(out_dir / "metrics.json", metrics)
    if install:
        shipped = Path(__file__).resolve().parents[1] / "models" / "resources" / DEFAULT_MODEL
        with atomic_path(shipped) as tmp:
            shutil.copyfile(out, tmp)
    record_stage(Path(cfg.run_dir), "retriever", {"codiesp": str(root), "install": install},
                 {"codeset": cs.edition}, [out, out_dir / "metrics.json"],
                 time.perf_counter() - started, {"metrics": metrics})
    return metrics
