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


def fitted_model(texts: list[str], gold: list[list[str]], weights: dict | None = None) -> dict:
    """The learned parts of a retriever fitted on these cases (ranker weights added later)."""
    return {"name": "codiesp-train", "features": list(FEATURES),
            "prior": dict(Counter(c for g in gold for c in g)),
            "neighbours": NeighbourIndex.fit(texts, gold).to_dict(), **(weights or {})}


def cross_fitted(texts: list[str], gold: list[list[str]], folds: int = 5):
    """(held-out indices, model fitted on the other folds) for each fold.

    A training case must never be its own neighbour, prior or centroid: the ranker learns, and the
    training prompts show, candidates as good as they will be on unseen notes.
    """
    for fold in range(folds):
        held = [i for i in range(len(texts)) if i % folds == fold]
        rest = [i for i in range(len(texts)) if i % folds != fold]
        yield held, fitted_model([texts[i] for i in rest], [gold[i] for i in rest])


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 50):
    """L2-regularised logistic regression by Newton's method: a few features, exact optimum."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(xb.shape[1])
    reg = l2 * np.eye(xb.shape[1])
    reg[-1, -1] = 0.0  # no penalty on the bias
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(xb @ w)))
        grad = xb.T @ (p - y) / len(y) + reg @ w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb / len(y) + reg
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


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
    texts = [c.text for c in train.cases]
    xs, ys = [], []
    progress = tqdm(total=len(texts), desc="retriever: train features (5 folds)")
    for held, fold_model in cross_fitted(texts, gold_train):
        fold_retriever = Retriever(cs, fold_model)
        for i in held:
            codes, x, _ = fold_retriever.features(texts[i])
            xs.append(x)
            ys.append(np.array([c in gold_train[i] for c in codes], dtype=np.float64))
            progress.update()
    progress.close()
    model = fitted_model(texts, gold_train)
    x, y = np.vstack(xs), np.concatenate(ys)
    retriever = Retriever(cs, model)  # features do not depend on the weights

    dev_features = [retriever.features(case.text)[:2] for case in tqdm(dev.cases, desc="retriever: dev")]

    def rank_dev(w, b):
        ranked, probs = [], []
        for codes, xd in dev_features:
            p = 1.0 / (1.0 + np.exp(-(xd @ w + b))) if len(codes) else np.array([])
            order = np.argsort(-p)[:100]
            ranked.append([codes[i] for i in order])
            probs.append([(codes[i], float(p[i])) for i in order])
        return ranked, probs

    # The regularisation strength is the one setting tuned on dev, by recall@50.
    tried = {}
    for l2 in (1e-3, 1e-4, 1e-5, 0.0):
        w, b = fit_logistic(x, y, l2=l2)
        tried[l2] = (recall_at(rank_dev(w, b)[0], gold_dev, 50), w, b)
    l2 = max(tried, key=lambda k: tried[k][0])
    _, w, b = tried[l2]
    model.update(weights=[round(float(v), 5) for v in w], bias=round(float(b), 5))
    ranked, probs = rank_dev(w, b)
    threshold, f1 = best_threshold(probs, gold_dev)
    model["threshold"] = threshold
    metrics = {"train_cases": len(train.cases), "dev_cases": len(dev.cases),
               "candidate_pool_positive_rate": round(float(y.mean()), 4),
               "l2_recall_at_50": {str(k): v[0] for k, v in tried.items()}, "l2": l2,
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
