"""The one place that scores predicted codes against gold codes, for every system alike.

Scoring rules (written into every evaluation report, see RULES):
- gold codes are normalized and brought to FY2026 as the data stage does (billable codes as
  written; R51 -> R51.9 where the code set makes the successor unambiguous);
- a gold code that is valid in FY2026 but not billable (T14.90, K56.60: a 2018 code that now
  needs more characters) is matched by that code or by any billable code under it (T14.90XA),
  whichever system predicted it: retrieval, which only proposes billable codes, and a model,
  which may write the header itself, are scored the same way;
- a gold code that no longer exists in FY2026 stays in the gold set and can only be missed;
- each predicted code matches at most one gold code; everything else is a false positive.
"""
from __future__ import annotations

import statistics
from collections import Counter

import numpy as np

RULES = (
    "Gold codes are brought to FY2026 as in the data stage. A gold code that is valid but not "
    "billable in FY2026 (e.g. T14.90) is matched by itself or by any billable code under it "
    "(T14.90XA), for every system alike. Gold codes that no longer exist can only be missed. "
    "Category F1 compares the first three characters."
)


def matched(gold: list[str], predicted: list[str]) -> list[str]:
    """The predictions with each descendant of a non-billable gold code replaced by that gold
    code (a billable gold code is never a prefix of another code, so prefix = descendant)."""
    headers = sorted((g for g in gold if g not in predicted), key=len, reverse=True)
    out = []
    for p in predicted:
        parent = next((g for g in headers if p != g and p.startswith(g)), None)
        out.append(parent if parent and parent not in out else p)
    return list(dict.fromkeys(out))


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def score(rows: list[dict]) -> dict:
    """Micro/macro P, R, F1, category F1 and exact match over rows of {"gold", "predicted"}."""
    tp = fp = fn = 0
    ctp = cfp = cfn = 0
    per_code = Counter()
    exact = 0
    for row in rows:
        gold = set(row["gold"])
        pred = set(matched(row["gold"], row["predicted"]))
        tp += len(gold & pred)
        fp += len(pred - gold)
        fn += len(gold - pred)
        for c in gold & pred:
            per_code[(c, "tp")] += 1
        for c in pred - gold:
            per_code[(c, "fp")] += 1
        for c in gold - pred:
            per_code[(c, "fn")] += 1
        gcat, pcat = {c[:3] for c in gold}, {c[:3] for c in pred}
        ctp += len(gcat & pcat)
        cfp += len(pcat - gcat)
        cfn += len(gcat - pcat)
        exact += gold == pred
    codes = {c for c, _ in per_code}
    macro = statistics.fmean(
        prf(per_code[(c, "tp")], per_code[(c, "fp")], per_code[(c, "fn")])[2] for c in codes
    ) if codes else 0.0
    p, r, f = prf(tp, fp, fn)
    return {"micro_precision": round(p, 4), "micro_recall": round(r, 4), "micro_f1": round(f, 4),
            "macro_f1": round(macro, 4), "category_micro_f1": round(prf(ctp, cfp, cfn)[2], 4),
            "exact_match": round(exact / len(rows), 4) if rows else 0.0}


def recall_at(ranked: list[list[str]], gold: list[list[str]], k: int) -> float:
    """Share of gold codes among the first k ranked candidates (matched as in `score`)."""
    hit = sum(len(set(matched(g, r[:k])) & set(g)) for r, g in zip(ranked, gold))
    total = sum(len(set(g)) for g in gold)
    return round(hit / total, 4) if total else 0.0


def f1_at(probs: list[list[tuple[str, float]]], gold: list[list[str]], threshold: float) -> float:
    """Micro-F1 of the codes at or above a fixed threshold."""
    return score([{"gold": g, "predicted": [c for c, p in cand if p >= threshold]}
                  for cand, g in zip(probs, gold)])["micro_f1"]


def shared_threshold(groups: list[tuple[list[list[tuple[str, float]]], list[list[str]]]]):
    """The threshold with the best mean micro-F1 over groups of notes ((probs, gold) each), and
    each group's F1 there: one threshold serves every kind of note the product reads."""
    best = (0.5, [0.0] * len(groups))
    # Rounded before use: the threshold tried is the one returned (0.25 tried as 0.2500000001
    # would keep a 0.25 that the returned 0.25 then admits).
    for t in np.round(np.arange(0.05, 0.95, 0.01), 2):
        f1s = [f1_at(probs, gold, t) for probs, gold in groups]
        if np.mean(f1s) > np.mean(best[1]):
            best = (float(t), f1s)
    return best


def best_threshold(probs: list[list[tuple[str, float]]], gold: list[list[str]]) -> tuple[float, float]:
    """The probability threshold with the best micro-F1 on these notes, and that F1."""
    threshold, (f1,) = shared_threshold([(probs, gold)])
    return threshold, f1
