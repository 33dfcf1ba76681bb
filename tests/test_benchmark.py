"""`python -m builder benchmark`: every runtime of a bundle on the same notes, interleaved."""
import json
import shutil

import pytest

from .conftest import run_module


def test_benchmark_compares_every_runtime_of_a_bundle(tiny_bundle, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_bundle.root, run / "bundle")
    data = tmp_path / "notes.jsonl"
    from builder.answer_check import CHECK_NOTES

    data.write_text("".join(json.dumps({"id": i, "note": n, "codes": ["I10"]}) + "\n"
                            for i, n in enumerate(CHECK_NOTES)))
    proc = run_module("builder", "benchmark", "--run-dir", str(run), "--data", str(data),
                      "--sweep-threads", "1,2", "--max-tokens", "48")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((run / "benchmark/benchmark.json").read_text())
    labels = [r["label"] for r in report["runtimes"]]
    from models.runtimes import cpu_has_amx_bf16

    # On a CPU with AMX, the merged model in bf16 too: what `--system bundle` runs there.
    amx = ["transformers bf16 (AMX)"] if cpu_has_amx_bf16() else []
    assert labels == ["retrieval", "transformers fp32", *amx, "GGUF Q4_K_M x1", "GGUF Q4_K_M x2"]
    by = {r["label"]: r for r in report["runtimes"]}
    assert all(r["notes"] == 3 for r in report["runtimes"])
    gguf = by["GGUF Q4_K_M x1"]
    assert gguf["prompt_tokens_per_note"] > 100 and gguf["answer_tokens_per_note"] > 5
    assert gguf["p95_s"] >= gguf["p50_s"] > 0 and "speedup_vs_transformers" in gguf
    assert by["retrieval"]["tokens_per_s"] is None  # no model, no tokens
    bound = report["compute_bound"]
    assert bound["prompt_gflop"] > 0 and report["machine"]["peak_gflops"] > 0
    assert set(bound["measured_gflops"]) == {"1", "2"} and all(g > 0 for g in bound["measured_gflops"].values())
    # The bound is the fastest arithmetic the CPU has: bf16 too where it reports bf16 instructions.
    from builder.benchmarks.runtimes import arithmetic_dtypes

    by_dtype = bound["measured_gflops_by_dtype"]
    assert list(by_dtype) == arithmetic_dtypes() and by_dtype["fp32"]["2"] > 0
    assert bound["measured_gflops"]["2"] == max(per["2"] for per in by_dtype.values())
    assert by_dtype[bound["bound_dtype"]["2"]]["2"] == bound["measured_gflops"]["2"]
    # Each model runtime's p50 is stated as a multiple of what its prompt's arithmetic needs.
    assert gguf["bound_s"] > 0 and gguf["x_bound"] == pytest.approx(gguf["p50_s"] / gguf["bound_s"], rel=0.02)
    assert gguf["x_bound_fp32"] <= gguf["x_bound"] + 0.01  # the fp32 bound is never the tighter one
    assert (run / "benchmark/benchmark.png").stat().st_size > 10_000
    assert "| GGUF Q4_K_M x2 |" in (run / "benchmark/benchmark.md").read_text()


@pytest.mark.parametrize("flags, dtypes", [(["avx2", "fma"], ["fp32"]),
                                           (["avx512f", "avx512_bf16"], ["fp32", "bf16"]),
                                           (["amx_tile", "amx_bf16"], ["fp32", "bf16"])])
def test_bound_counts_bf16_only_where_the_cpu_has_it(monkeypatch, flags, dtypes):
    # Without bf16 instructions torch emulates bf16 (slower than fp32): no bf16 bound there.
    import models.runtimes
    from builder.benchmarks.runtimes import arithmetic_dtypes

    monkeypatch.setattr(models.runtimes, "cpu_flags", lambda: flags)
    assert arithmetic_dtypes() == dtypes


def test_the_bf16_torch_contender_runs_only_on_a_cpu_with_amx(monkeypatch, tiny_bundle):
    import models.runtimes
    from builder.benchmarks.runtimes import contenders

    monkeypatch.setattr(models.runtimes, "cpu_flags", lambda: ["avx512f", "avx512_bf16"])
    assert [c.label for c in contenders(tiny_bundle, [(2, 2)])] == ["retrieval", "transformers fp32", "GGUF Q4_K_M x2"]
    monkeypatch.setattr(models.runtimes, "cpu_flags", lambda: ["avx512f", "avx512_bf16", "amx_bf16"])
    found = {c.label: c.options for c in contenders(tiny_bundle, [(2, 2)])}
    assert found["transformers fp32"]["dtype"] == "fp32" and found["transformers bf16 (AMX)"]["dtype"] == "bf16"
