"""The data report: counts per source, code outcomes, code frequency, token lengths, plots."""
from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

from builder.plots import pyplot, save_png
from models.files import write_json_atomic, write_text_atomic


def _token_lengths(rows: list[dict], tokenizer) -> list[int]:
    lengths = []
    for ex in rows:
        text = tokenizer.apply_chat_template(ex["prompt"] + ex["completion"], tokenize=False)
        lengths.append(len(tokenizer(text, add_special_tokens=False).input_ids))
    return lengths


def _percentiles(values: list[int]) -> dict:
    if not values:
        return {}
    qs = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else [values[0]] * 99
    return {"min": min(values), "p50": qs[49], "p90": qs[89], "p99": qs[98], "max": max(values),
            "mean": round(statistics.fmean(values), 1), "total": sum(values)}


def write_report(out_dir: Path, splits: dict[str, list[dict]], stats: dict, dcfg, base_model: str) -> list[Path]:
    tokenizer = None
    if dcfg.tokenizer != "none":
        from builder.base_model import load_tokenizer  # noqa: PLC0415 - imports transformers

        tokenizer = load_tokenizer(base_model if dcfg.tokenizer == "base" else dcfg.tokenizer)
    report = {"sources": stats["sources"], "splits": {}}
    lengths_by_split = {}
    for split, rows in splits.items():
        freq = Counter(c["code"] for ex in rows for c in ex["codes"])
        per_source = Counter(ex["source"] for ex in rows)
        entry = {
            "examples": len(rows), "by_source": dict(per_source),
            "codes": sum(freq.values()), "distinct_codes": len(freq),
            "codes_per_example": round(sum(freq.values()) / len(rows), 2) if rows else 0,
            "examples_without_codes": sum(not ex["codes"] for ex in rows),
            "top_codes": freq.most_common(25),
        }
        if tokenizer is not None:
            lengths_by_split[split] = _token_lengths(rows, tokenizer)
            entry["tokens"] = _percentiles(lengths_by_split[split])
        report["splits"][split] = entry
    groups = {s: {ex["group"] for ex in rows} for s, rows in splits.items()}
    report["groups_on_both_sides"] = len(groups["train"] & groups["validation"])
    outputs = [out_dir / "report.json", out_dir / "report.md"]
    write_json_atomic(outputs[0], report)
    write_text_atomic(outputs[1], _markdown(report))
    if lengths_by_split:
        outputs.append(_plot(out_dir / "report.png", lengths_by_split, splits))
    return outputs


def _markdown(report: dict) -> str:
    lines = ["# Data report", "", "## Sources", "",
             "| source | examples | gold codes | gold in candidates | no usable code |",
             "|---|---:|---:|---:|---:|"]
    for name, s in report["sources"].items():
        lines.append(f"| {name} | {s['examples']} | {s['gold_codes']} | "
                     f"{s['gold_in_candidates']} | {s['cases_with_no_usable_code']} |")
    lines += ["", "## Gold codes against ICD-10-CM FY2026", "",
              "Billable codes are kept; a code split after 2018 is mapped only when one billable "
              "code is the unambiguous equivalent; flagged codes stay out of training targets.", ""]
    outcome_names = list(next(iter(report["sources"].values()))["code_outcomes"])
    lines.append("| source | " + " | ".join(outcome_names) + " |")
    lines.append("|---|" + "---:|" * len(outcome_names))
    for name, s in report["sources"].items():
        lines.append(f"| {name} | " + " | ".join(str(s["code_outcomes"][k]) for k in outcome_names) + " |")
    lines += ["", "## Splits", ""]
    for split, s in report["splits"].items():
        lines.append(f"- **{split}**: {s['examples']} examples ({s['by_source']}), {s['codes']} codes, "
                     f"{s['distinct_codes']} distinct, {s['codes_per_example']} per example")
        if "tokens" in s:
            t = s["tokens"]
            lines.append(f"  - tokens per example (prompt + answer): p50 {t['p50']:.0f}, p90 "
                         f"{t['p90']:.0f}, max {t['max']}, total {t['total']:,}")
        lines.append("  - most frequent: " + ", ".join(f"{c} ({n})" for c, n in s["top_codes"][:10]))
    lines += ["", f"Groups (cases) on both sides of the split: {report['groups_on_both_sides']}", "",
              "CodiEsp: Miranda-Escalada A., Gonzalez-Agirre A., Armengol-Estapé J., Krallinger M. "
              "CLEF eHealth 2020 CodiEsp track, Zenodo 10.5281/zenodo.3693570 (CC BY 4.0).", ""]
    return "\n".join(lines)


def _plot(path: Path, lengths: dict[str, list[int]], splits: dict[str, list[dict]]) -> Path:
    plt = pyplot()

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for split, values in lengths.items():
        ax1.hist(values, bins=40, alpha=0.6, label=f"{split} (n={len(values)})")
    ax1.set(title="Tokens per example (prompt + answer)", xlabel="tokens", ylabel="examples")
    ax1.legend()
    freq = Counter(c["code"] for ex in splits["train"] for c in ex["codes"])
    top = freq.most_common(20)
    ax2.barh([c for c, _ in top][::-1], [n for _, n in top][::-1])
    ax2.set(title="Most frequent training codes", xlabel="examples")
    fig.tight_layout()
    return save_png(fig, path)
