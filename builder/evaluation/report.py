"""`python -m builder report`: one table and one chart from every evaluation in the run folder
(<run>/eval/*/metrics.json) -> <run>/eval/summary.md and summary.png."""
from __future__ import annotations

import json
from pathlib import Path

from builder.plots import pyplot, save_png
from models.files import write_text_atomic

COLUMNS = [("micro_precision", "P"), ("micro_recall", "R"), ("micro_f1", "micro-F1"),
           ("macro_f1", "macro-F1"), ("category_micro_f1", "category F1"),
           ("pred_codes_per_note", "codes/note"), ("recall_at_50", "cand. recall@50"),
           ("invalid_rate", "invalid"), ("latency_p50_s", "p50 s/note"), ("model_mb", "model MB")]


def system_name(m: dict) -> str:
    """A reader's name for what was evaluated: runtime and format, not a path."""
    label = m.get("label") or m["system"]
    system = m["system"]
    verifier = system.startswith("verifier:")  # a model judging the ranker's candidates
    runtime, _, where = system.removeprefix("verifier:").partition(":")
    path = Path(where)
    dtype = runtime.partition(" ")[2] or "fp32"  # "transformers bf16" on a CPU with AMX
    if system == "retrieval":  # asked for, or what the bundle runs by default
        return "retrieval alone" + (" (the bundle's default)" if label == "bundle" else "")
    if label == "base":
        name = f"base model (PyTorch {dtype})"
    elif runtime == "llama.cpp":
        qtype = path.stem.rsplit("-", 1)[-1] if path.stem.startswith("icd10-coder-") else path.stem
        name = f"GGUF {qtype} (llama.cpp)"
    elif runtime == "onnx":
        name = f"ONNX {path.name}"
    elif runtime in ("openai", "ollama"):
        name = f"served by {runtime} ({where.rpartition('#')[2] or where})"
    else:
        name = f"{path.name} (PyTorch {dtype})"
    if verifier:
        return f"verifier {name} over the ranker"
    return name + (" + candidates" if m["with_candidates"] else ", zero-shot")


def _data(m: dict) -> str:
    d = m["data"]
    return f"CodiEsp {Path(d.split(':', 1)[1]).name}" if d.startswith("codiesp:") else Path(d).name


def run(run_dir: str, eval_dir: str | None = None) -> dict:
    out = Path(eval_dir) if eval_dir else Path(run_dir, "eval")
    evals = sorted(out.glob("*/metrics.json"))
    if not evals:
        raise FileNotFoundError(f"No evaluations under {out}: run `python -m builder evaluate`.")
    rows = [json.loads(p.read_text()) for p in evals]
    for m in rows:
        m["model_mb"] = round(m["model_bytes"] / 1e6) if m.get("model_bytes") else "-"
    rows.sort(key=lambda m: (_data(m), -m["micro_f1"]))
    lines = ["| data | system | notes | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|---|---|---:|" + "---:|" * len(COLUMNS)]
    for m in rows:
        lines.append(f"| {_data(m)} | {system_name(m)} | {m['n_notes']} | "
                     + " | ".join(f"{m[k]:.3f}" if isinstance(m[k], float) else str(m[k])
                                  for k, _ in COLUMNS) + " |")
    table = "\n".join(lines) + "\n"
    write_text_atomic(out / "summary.md", table)
    _plot(out / "summary.png", rows)
    return {"table": table, "evaluations": len(rows)}


def _plot(path: Path, rows: list[dict]) -> None:
    plt = pyplot()

    datasets = sorted({_data(m) for m in rows})
    fig, axes = plt.subplots(1, len(datasets), figsize=(8.5 * len(datasets), 3.8), squeeze=False)
    for ax, data in zip(axes[0], datasets):
        sub = [m for m in rows if _data(m) == data]
        # The note count in the name: runs on a part of the data (--limit) sit beside whole ones.
        names = [f"{system_name(m)}, {m['n_notes']} notes" for m in sub]
        f1 = [m["micro_f1"] for m in sub]
        bars = ax.barh(range(len(sub)), f1, color="#4c72b0")
        ax.bar_label(bars, labels=[f"{v:.3f}  ({m['latency_p50_s']:.1f} s/note"
                                   + (f", {m['model_mb']:.0f} MB)" if m["model_mb"] != "-" else ")")
                                   for v, m in zip(f1, sub)],
                     fontsize=8, padding=3)
        ax.set_yticks(range(len(sub)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.15)  # room for the labels right of a bar
        ax.set_title(f"micro-F1 on {data}", fontsize=10)
    fig.tight_layout()
    save_png(fig, path)
