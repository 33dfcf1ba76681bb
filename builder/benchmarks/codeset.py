"""Code-set speed, against the goals: open < 0.2 s warm, 10,000 look-ups < 0.1 s, search < 20 ms
(after `prepare_search`, which a retriever calls when it loads).

    python -m builder.benchmarks.codeset [--json]

Run in a fresh process so that "open" is measured as the app sees it.
"""
from __future__ import annotations

import json
import random
import statistics
import sys
import time

QUERIES = [
    "type 2 diabetes mellitus with diabetic chronic kidney disease", "essential hypertension",
    "acute myocardial infarction", "chest pain", "community acquired pneumonia", "headache",
    "fracture of neck of right femur", "urinary tract infection", "major depressive disorder",
    "chronic obstructive pulmonary disease with acute exacerbation", "iron deficiency anemia",
    "atrial fibrillation", "low back pain", "fever", "breast cancer", "acute kidney injury",
    "hypothyroidism", "congestive heart failure", "cellulitis of left lower limb", "obesity",
    "abdominal pain right lower quadrant", "migraine without aura", "sepsis due to e coli",
    "pulmonary embolism", "osteoarthritis of knee", "gastroesophageal reflux disease",
    "alcohol dependence", "hyperlipidemia", "asthma", "anxiety disorder",
]


def main() -> int:
    t0 = time.perf_counter()
    from models import codeset  # import + open, as the app pays it

    cs = codeset.load()
    cs.is_billable("E11.9")
    open_s = time.perf_counter() - t0

    codes = random.Random(0).sample(cs.all_codes(billable_only=False), 10_000)
    t0 = time.perf_counter()
    for code in codes:
        cs.is_billable(code)
    lookup_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    cs.prepare_search()  # as a retriever does when it loads
    prepare_s = time.perf_counter() - t0

    times = []
    for q in QUERIES * 3:
        t0 = time.perf_counter()
        cs.search(q)
        times.append(time.perf_counter() - t0)
    times_ms = sorted(t * 1000 for t in times[len(QUERIES):])  # first round warms the caches
    result = {
        "import_and_open_warm_s": round(open_s, 4), "goal_open_s": 0.2,
        "lookups_10k_s": round(lookup_s, 4), "goal_lookups_10k_s": 0.1,
        "prepare_search_s": round(prepare_s, 4),
        "search_p50_ms": round(statistics.median(times_ms), 2),
        "search_p95_ms": round(times_ms[int(0.95 * len(times_ms)) - 1], 2),
        "search_cold_max_ms": round(max(times[:len(QUERIES)]) * 1000, 2), "goal_search_ms": 20,
    }
    if "--json" in sys.argv:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:>22}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
