"""`python -m builder benchmark`: the same notes through every runtime the run has, interleaved.

Contenders: retrieval alone; the merged model in transformers (fp32, the reference); ONNX fp32
and INT8; each GGUF the run exported, at every thread count asked for. All are loaded first (load
time and resident memory added), then each note goes through every contender, in an order that
rotates from note to note, so that machine noise falls on all of them alike. Per contender:
latency p50/p95 per note, prompt and answer tokens, tokens per second, load seconds, memory added
at load, micro-F1 on the notes. Ratios are against transformers fp32. Writes benchmark.json,
benchmark.md and benchmark.png in the output folder.

The compute bound of a note: its prompt costs 2 x (parameters outside the vocabulary projection)
FLOPs per token plus causal attention (2 x layers x width x tokens^2); the answer's projection is
computed for the last token only. What the cores can do is measured here, not assumed: the best of
a few matrix products of the model's own shape (prompt tokens x width @ width x MLP width) through
torch at each thread count, in fp32 and, where the CPU reports bf16 instructions (AVX512_BF16,
AMX), in bf16 too: the bound is the faster of the two, since a runtime may read the prompt in
either. bound s = prompt FLOPs / measured FLOP/s; the report gives each runtime's p50 as a
multiple of it (and of the fp32-only bound). The theoretical peak from /proc/cpuinfo is shown
beside.
"""
from __future__ import annotations

import gc
import json
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from builder.config import BuildConfig
from builder.evaluation.evaluate import gold_codes, load_notes, score
from builder.plots import pyplot, save_png
from builder.stages.export import GGUF_TYPES
from models import codeset as codeset_mod
from models.files import write_json_atomic, write_text_atomic
from models.pipeline import Pipeline
from models.runtimes import RuntimeUnavailable, cpu_flags, cpu_has_amx_bf16, cpu_has_native_bf16
from models.select import open_selector


@dataclass
class Contender:
    label: str
    spec: str
    options: dict = field(default_factory=dict)
    pipeline: Pipeline | None = None
    load_seconds: float = 0.0
    memory_mb: float = 0.0
    rows: list[dict] = field(default_factory=list)


def parse_threads(text: str) -> list[tuple[int, int]]:
    """"1,2,1+2" -> [(1, 1), (2, 2), (1, 2)]: (answer threads, prompt threads) for llama.cpp."""
    out = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        gen, _, batch = item.partition("+")
        if not gen.isdigit() or (batch and not batch.isdigit()) or int(gen) < 1:
            raise ValueError(f"--sweep-threads: {item!r} is not N or N+M (answer+prompt threads)")
        out.append((int(gen), int(batch or gen)))
    return out


def contenders(bundle, threads: list[tuple[int, int]]) -> list[Contender]:
    """Every runtime of the bundle's models; llama.cpp once per thread setting."""
    most = max(max(t) for t in threads)
    out = [Contender("retrieval", "retrieval")]
    order = {"safetensors": 0, "onnx": 1, "gguf": 2}
    for m in sorted(bundle.models, key=lambda m: (order[m.format], GGUF_TYPES.index(m.variant)
                                                   if m.variant in GGUF_TYPES else 0)):
        path = str(bundle.path(m.path))
        if m.format == "safetensors":
            out.append(Contender("transformers fp32", path, {"threads": most, "dtype": "fp32"}))
            if cpu_has_amx_bf16():  # what `--system bundle` runs there (Bundle.model_to_run)
                out.append(Contender("transformers bf16 (AMX)", path, {"threads": most, "dtype": "bf16"}))
        elif m.format == "onnx":
            out.append(Contender(f"ONNX {m.variant}", path, {"threads": most}))
        else:
            for gen, batch in threads:
                label = f"GGUF {m.variant} x{gen}" + (f"+{batch}" if batch != gen else "")
                out.append(Contender(label, path, {"threads": gen, "batch_threads": batch}))
    return out


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def arithmetic_dtypes() -> list[str]:
    """The dtypes whose matrix products the CPU runs natively: fp32 always, bf16 where it reports
    bf16 dot-product instructions (elsewhere torch emulates bf16, slower than fp32)."""
    return ["fp32"] + (["bf16"] if cpu_has_native_bf16() else [])


def cpu_peak_gflops() -> dict:
    """What the cores could do at most, from /proc/cpuinfo (fp32, FMA counted as 2 FLOPs)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = cpu_flags()
    mhz = [float(line.split(":", 1)[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
    per_cycle = 64 if "avx512f" in flags else 32 if "fma" in flags and "avx2" in flags else 16
    cores = len(os.sched_getaffinity(0))
    ghz = max(mhz) / 1000 if mhz else 2.5
    return {"cores": cores, "ghz": round(ghz, 2), "flops_per_cycle": per_cycle,
            "peak_gflops": round(cores * ghz * per_cycle, 1),
            "simd": "avx512" if per_cycle == 64 else "avx2+fma" if per_cycle == 32 else "sse"}


def model_geometry(bundle) -> dict:
    """Parameter counts and shape of the bundle's model (empty when it has no merged model)."""
    merged = bundle.find_model(fmt="safetensors")
    config = bundle.path(merged.path) / "config.json" if merged else Path("/nonexistent")
    if not config.exists():
        return {}
    c = json.loads(config.read_text())
    h, layers, inter, vocab = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"], c["vocab_size"]
    kv = h * c.get("num_key_value_heads", c["num_attention_heads"]) // c["num_attention_heads"]
    body = layers * (h * h * 2 + h * kv * 2 + 3 * h * inter)
    return {"parameters": body + vocab * h, "body_parameters": body, "layers": layers, "hidden": h,
            "intermediate": inter, "vocab": vocab}


def prompt_gflop(geometry: dict, tokens: float) -> float:
    """FLOPs (in G) of reading a prompt: the layers for every token, attention (causal), and the
    vocabulary projection for the last token only (what llama.cpp and generate() compute)."""
    g = geometry
    return (2 * g["body_parameters"] * tokens + 2 * g["layers"] * g["hidden"] * tokens ** 2
            + 2 * g["vocab"] * g["hidden"]) / 1e9


def measured_gflops(threads: int, rows: int, width: int, inner: int, repeats: int = 12,
                    dtype: str = "fp32") -> float:
    """Best GFLOP/s of a (rows x width) @ (width x inner) product on `threads` threads."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        kind = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
        a, b = torch.randn(rows, width, dtype=kind), torch.randn(width, inner, dtype=kind)
        for _ in range(3):
            a @ b
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - started)
    finally:
        torch.set_num_threads(previous)
    return round(2 * rows * width * inner / best / 1e9, 1)


def _summary(c: Contender, reference: Contender | None) -> dict:
    lat = sorted(r["seconds"] for r in c.rows)
    prompt = sum(r["prompt_tokens"] for r in c.rows)
    answer = sum(r["completion_tokens"] for r in c.rows)
    total_s = sum(lat)
    s = {"label": c.label, "spec": c.spec, "threads": c.options.get("threads"),
         "batch_threads": c.options.get("batch_threads"), "notes": len(lat),
         "p50_s": round(statistics.median(lat), 3),
         "p95_s": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 3),
         "prompt_tokens_per_note": round(prompt / len(lat), 1),
         "answer_tokens_per_note": round(answer / len(lat), 1),
         "tokens_per_s": round((prompt + answer) / total_s, 1) if total_s and prompt else None,
         "load_s": round(c.load_seconds, 2), "memory_mb": round(c.memory_mb, 1),
         **score(c.rows)}
    if reference is not None and reference is not c and reference.rows:
        s["speedup_vs_transformers"] = round(statistics.median(r["seconds"] for r in reference.rows)
                                             / s["p50_s"], 2)
    return s


def run(cfg: BuildConfig, data: str, limit: int = 10, threads: list[tuple[int, int]] | None = None,
        max_tokens: int = 96, out_dir: str | None = None, only: list[str] | None = None,
        bundle: str | None = None) -> dict:
    from models.bundle import resolve

    run_dir = Path(cfg.run_dir)
    threads = threads or [(1, 1), (2, 2)]
    out = Path(out_dir) if out_dir else run_dir / "benchmark"
    cs = codeset_mod.load()
    bundle = resolve(bundle, run_dir, newest=False)
    before, started = rss_mb(), time.perf_counter()
    retriever = bundle.load_retriever(cs)  # every runtime's, and all that retrieval alone loads
    retriever_load = (time.perf_counter() - started, max(0.0, rss_mb() - before))
    notes = load_notes(data, cfg)[:limit]
    field_ = [c for c in contenders(bundle, threads)
              if not only or any(o.lower() in c.label.lower() for o in only)]
    loaded = []
    for c in tqdm(field_, desc="load", unit="runtime"):
        gc.collect()
        before, started = rss_mb(), time.perf_counter()
        try:
            selector = open_selector(c.spec, max_tokens=max_tokens, stacker=bundle.stacker(c.spec),
                                     **c.options)
        except RuntimeUnavailable as exc:
            tqdm.write(f"skipped {c.label}: {exc}")
            continue
        c.load_seconds = time.perf_counter() - started
        c.memory_mb = max(0.0, rss_mb() - before)
        if c.spec == "retrieval":
            c.load_seconds, c.memory_mb = retriever_load
        c.pipeline = Pipeline(selector, cs, retriever)
        loaded.append(c)
    if not loaded:
        raise RuntimeUnavailable("No runtime could be loaded for the benchmark.")
    geometry = model_geometry(bundle)
    thread_counts = sorted({n for pair in threads for n in pair})
    dtypes = arithmetic_dtypes()

    def measure(rows: int) -> dict:
        return {d: {n: measured_gflops(n, rows, geometry["hidden"], geometry["intermediate"], dtype=d)
                    for n in thread_counts} for d in dtypes}

    before_gflops = measure(800) if geometry else {}
    for i, note in enumerate(tqdm(notes, desc="benchmark", unit="note")):
        gold, _ = gold_codes(note.gold_raw, cs)
        for c in loaded[i % len(loaded):] + loaded[: i % len(loaded)]:  # rotate the order
            started = time.perf_counter()
            result = c.pipeline.suggest(note.text)
            c.rows.append({"id": note.note_id, "gold": gold, "predicted": result.codes,
                           "seconds": time.perf_counter() - started,
                           "prompt_tokens": result.prompt_tokens,
                           "completion_tokens": result.completion_tokens})
    reference = next((c for c in loaded if c.label == "transformers fp32"), None)
    rows = [_summary(c, reference) for c in loaded]
    machine = cpu_peak_gflops()
    bound = {}
    if geometry:
        typical = statistics.median(r["prompt_tokens_per_note"] for r in rows if r["prompt_tokens_per_note"])
        # What the cores can do: the best of a measurement before the notes and one after, per
        # dtype; the bound is the fastest dtype's.
        after = measure(int(typical))
        by_dtype = {d: {n: max(before_gflops[d][n], after[d][n]) for n in thread_counts} for d in dtypes}
        measured = {n: max(by_dtype[d][n] for d in dtypes) for n in thread_counts}
        typical_gflop = prompt_gflop(geometry, typical)
        bound = {**geometry, "prompt_tokens": typical, "prompt_gflop": round(typical_gflop, 1),
                 "measured_gflops": measured, "measured_gflops_by_dtype": by_dtype,
                 "bound_dtype": {n: max(dtypes, key=lambda d: by_dtype[d][n]) for n in thread_counts},
                 "bound_s": {n: float(f"{typical_gflop / g:.4g}") for n, g in measured.items()}}
        for r in rows:
            if r["prompt_tokens_per_note"]:
                n = r["batch_threads"] or r["threads"]  # the prompt's threads
                gflop = prompt_gflop(geometry, r["prompt_tokens_per_note"])
                floor = gflop / measured[n]
                r["bound_s"], r["x_bound"] = float(f"{floor:.4g}"), round(r["p50_s"] / floor, 2)
                r["x_bound_fp32"] = round(r["p50_s"] * by_dtype["fp32"][n] / gflop, 2)
    report = {"data": data, "notes": len(notes), "max_tokens": max_tokens, "machine": machine,
              "compute_bound": bound, "runtimes": rows,
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "benchmark.json", report)
    write_text_atomic(out / "benchmark.md", markdown(report))
    _plot(out / "benchmark.png", report)
    for c in loaded:
        c.pipeline.selector.close()
    return report


def markdown(report: dict) -> str:
    m, b = report["machine"], report["compute_bound"]
    lines = [f"Benchmark: {report['notes']} notes of {report['data']}, answers capped at "
             f"{report['max_tokens']} tokens, interleaved. Machine: {m['cores']} cores at "
             f"{m['ghz']} GHz, {m['simd']}, peak {m['peak_gflops']} GFLOP/s fp32.", ""]
    if b:
        by_dtype = b.get("measured_gflops_by_dtype") or {"fp32": b["measured_gflops"]}
        measured = "; ".join(f"{d} " + ", ".join(f"{g} on {n} thread{'s' if int(n) > 1 else ''}"
                                                 for n, g in per.items())
                             for d, per in by_dtype.items())
        lines += [f"Compute bound: a {b['prompt_tokens']:.0f}-token prompt of this "
                  f"{b['parameters'] / 1e6:.0f}M-parameter model is {b['prompt_gflop']} GFLOP; measured "
                  f"matrix products of its shape: {measured} GFLOP/s, so at the fastest it cannot take "
                  "less than " + ", ".join(f"{s} s ({n} threads)" for n, s in b["bound_s"].items())
                  + ". `x bound` is each runtime's p50 over that, `x fp32` over the fp32 bound.", ""]
    lines += ["| runtime | p50 s | p95 s | x transformers | x bound | x fp32 | tokens/s | prompt tok "
              "| answer tok | load s | memory MB | micro-F1 |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["runtimes"]:
        lines.append(f"| {r['label']} | {r['p50_s']:.2f} | {r['p95_s']:.2f} | "
                     f"{r.get('speedup_vs_transformers', '-')} | {r.get('x_bound', '-')} | "
                     f"{r.get('x_bound_fp32', '-')} | "
                     f"{r['tokens_per_s'] or '-'} | {r['prompt_tokens_per_note']:.0f} | "
                     f"{r['answer_tokens_per_note']:.0f} | {r['load_s']:.2f} | {r['memory_mb']:.0f} | "
                     f"{r['micro_f1']:.3f} |")
    return "\n".join(lines) + "\n"


def _plot(path: Path, report: dict) -> None:
    plt = pyplot()

    rows = report["runtimes"]
    labels = [r["label"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 0.45 * len(rows) + 1.8), sharey=True)
    ax1.barh(labels, [r["p50_s"] for r in rows], color="#1f5f99")
    ax1.errorbar([r["p50_s"] for r in rows], labels,
                 xerr=[[0] * len(rows), [r["p95_s"] - r["p50_s"] for r in rows]], fmt="none", ecolor="#333")
    b = report["compute_bound"]
    for n, floor in (b.get("bound_s") or {}).items():
        threads = f"{n} thread{'s' if int(n) > 1 else ''}"
        dtype = (b.get("bound_dtype") or {}).get(n, "fp32")
        ax1.axvline(floor, color="#c0392b", linestyle="--" if int(n) > 1 else ":", linewidth=1,
                    label=f"compute bound of the prompt ({dtype}), {threads}")
        if dtype != "fp32":
            fp32 = b["prompt_gflop"] / b["measured_gflops_by_dtype"]["fp32"][n]
            ax1.axvline(fp32, color="#e67e22", linestyle="--" if int(n) > 1 else ":", linewidth=1,
                        label=f"fp32 bound, {threads}")
    if report["compute_bound"].get("bound_s"):
        ax1.legend(loc="upper right", fontsize=8)
    ax1.set_xlabel("seconds per note (p50, bar to p95)")
    ax2.barh(labels, [r["micro_f1"] for r in rows], color="#2e9e5b")
    ax2.set_xlabel("micro-F1 on the same notes")
    ax1.invert_yaxis()
    fig.suptitle(f"{report['notes']} notes, {report['machine']['cores']} cores, "
                 f"answers <= {report['max_tokens']} tokens")
    fig.tight_layout()
    save_png(fig, path)
