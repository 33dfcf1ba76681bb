"""builder export: GGUF and ONNX files that load, answer through the contract, and match."""
import json
import shutil

import pytest

from builder.config import BuildConfig
from builder.distribution.modelfile import UnknownChatFormat, render_modelfile
from builder.stages import export
from models.contract import SYSTEM_PROMPT
from models.files import sha256_file


@pytest.fixture
def exported_run(contract_tiny_model, tmp_path):
    """A run folder whose merged model follows the contract."""
    run = tmp_path / "run"
    shutil.copytree(contract_tiny_model, run / "merged")
    return run


def test_base_tokenizer_splits_text_exactly_as_llama_cpp_does(embedded_codiesp):
    # The model is trained with the HF tokenizer and served by llama.cpp: the two must agree.
    import llama_cpp

    from builder.base_model import embedded_gguf, load_tokenizer

    tok = load_tokenizer()
    llm = llama_cpp.Llama(str(embedded_gguf()), vocab_only=True, verbose=False)
    texts = [p.read_text() for p in sorted((embedded_codiesp / "dev/text_files_en").glob("*.txt"))[:25]]
    texts += ["E11.9 2024-05-01 37.5°C ñandú 😀", "<|im_start|>user\nI10<|im_end|>\n"]
    for text in texts:
        assert tok.encode(text, add_special_tokens=False) == \
            llm.tokenize(text.encode(), add_bos=False, special=True)
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_gguf_export_quantizes_verifies_and_writes_the_modelfile(exported_run):
    cfg = BuildConfig(run_dir=str(exported_run), model_kind="generative")
    report = export.run(cfg, ["gguf"], ["Q8_0", "Q4_K_M"])
    for qtype in ("Q8_0", "Q4_K_M"):
        path = export.gguf_path(exported_run, qtype)
        assert path.read_bytes()[:4] == b"GGUF"
        entry = report["gguf"][path.name]
        assert entry["sha256"] == sha256_file(path)
        assert entry["eos_token"] == "<|im_end|>"
        assert entry["verify"]["codes"] == ["I10"]  # it answers through the contract
        meta = export.gguf_metadata(path)
        assert "<|im_start|>" in meta["chat_template"] and meta["tokenizer_model"] == "gpt2"
    assert not export.gguf_path(exported_run, "F16").exists()  # only an intermediate
    assert not list((exported_run / "gguf").glob(".*tmp"))
    modelfile = (exported_run / "gguf/Modelfile").read_text()
    assert "FROM ./icd10-coder-Q4_K_M.gguf" in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile and "PARAMETER temperature 0" in modelfile
    manifest = json.loads((exported_run / "manifest.json").read_text())["stages"]["export"]
    assert manifest["outputs"]["gguf/icd10-coder-Q4_K_M.gguf"]["sha256"] == sha256_file(
        export.gguf_path(exported_run, "Q4_K_M"))


def test_earlier_exports_stay_listed_only_for_the_same_merged_model(exported_run):
    from safetensors.torch import load_file, save_file

    cfg = BuildConfig(run_dir=str(exported_run), model_kind="generative")
    export.run(cfg, ["gguf"], ["Q8_0"])
    report = export.run(cfg, ["gguf"], ["Q4_K_M"])  # another type of the same model: both listed
    assert set(report["gguf"]) == {"icd10-coder-Q8_0.gguf", "icd10-coder-Q4_K_M.gguf"}
    # Merged again (a retrain): the Q8_0 on disk is of the old model and must not pass for the new.
    weights = exported_run / "merged/model.safetensors"
    save_file(load_file(weights), weights, metadata={"format": "pt", "merged": "again"})
    report = export.run(cfg, ["gguf"], ["Q4_K_M"])
    assert set(report["gguf"]) == {"icd10-coder-Q4_K_M.gguf"}
    assert report["not_kept"]["files"] == ["gguf/icd10-coder-Q8_0.gguf"]
    listed = json.loads((exported_run / "manifest.json").read_text())["stages"]["export"]["outputs"]
    assert "gguf/icd10-coder-Q8_0.gguf" not in listed and "gguf/icd10-coder-Q4_K_M.gguf" in listed


def test_failed_quantize_leaves_no_file(tmp_path):
    bad = tmp_path / "in.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    out = tmp_path / "out.gguf"
    with pytest.raises(export.ExportError, match="failed"):
        export.quantize(bad, out, "Q4_K_M")
    assert list(tmp_path.iterdir()) == [bad]


def test_unknown_gguf_type_is_refused_before_any_work(exported_run):
    with pytest.raises(export.ExportError, match="Q4_K_M"):
        export.run(BuildConfig(run_dir=str(exported_run), model_kind="generative"), ["gguf"], ["Q3_X"])


def test_export_without_merged_model_says_what_to_do(tmp_path):
    with pytest.raises(export.ExportError, match="builder merge"):
        export.run(BuildConfig(run_dir=str(tmp_path), model_kind="generative"))


def test_onnx_export_matches_pytorch_and_quantizes(exported_run, contract_tiny_model):
    from models.runtimes import open_runtime
    from models.runtimes.onnx_runtime import OnnxRuntime

    export.run(BuildConfig(run_dir=str(exported_run), model_kind="generative"), ["gguf"], ["Q8_0"])
    report = export.run(BuildConfig(run_dir=str(exported_run), model_kind="generative"), ["onnx"])
    assert report["onnx"]["fp32"]["greedy_match"]["mismatches"] == []
    # The GGUF exported before stays listed in the manifest (the app finds models there).
    outputs = json.loads((exported_run / "manifest.json").read_text())["stages"]["export"]["outputs"]
    assert "gguf/icd10-coder-Q8_0.gguf" in outputs and "onnx/int8/model.onnx" in outputs
    assert "icd10-coder-Q8_0.gguf" in report["gguf"]
    for kind in ("fp32", "int8"):
        assert report["onnx"][kind]["verify"]["codes"] == ["I10"]
    fp32 = (exported_run / "onnx/fp32/model.onnx").stat().st_size
    int8 = (exported_run / "onnx/int8/model.onnx").stat().st_size
    assert int8 < fp32 / 2
    # The runtime builds the same prompt ids as transformers' chat template.
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(contract_tiny_model)
    runtime = open_runtime(str(exported_run / "onnx/int8"))
    assert isinstance(runtime, OnnxRuntime)
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "BP 140/90, 2 mg"}]
    assert runtime.prompt_ids(messages) == tok.apply_chat_template(messages, add_generation_prompt=True)


def test_corrupt_onnx_model_is_refused_with_advice(tmp_path):
    from models.runtimes import RuntimeUnavailable, open_runtime

    (tmp_path / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(RuntimeUnavailable, match="builder export"):
        open_runtime(str(tmp_path))


def test_modelfile_templates_follow_the_chat_format():
    chatml = render_modelfile("./m.gguf", "{{'<|im_start|>' + message['role']}}")
    assert "<|im_start|>{{ .Role }}" in chatml and SYSTEM_PROMPT.splitlines()[0] in chatml
    llama3 = render_modelfile("./m.gguf", "<|start_header_id|>{{ role }}")
    assert 'PARAMETER stop "<|eot_id|>"' in llama3
    from builder.base_gemma import GEMMA_CHAT_TEMPLATE  # the template the Gemma base is given
    gemma = render_modelfile("./m.gguf", GEMMA_CHAT_TEMPLATE)
    assert "<start_of_turn>model\n" in gemma and 'PARAMETER stop "<end_of_turn>"' in gemma
    with pytest.raises(UnknownChatFormat):
        render_modelfile("./m.gguf", "[INST] {{ content }} [/INST]")
    assert "raw prompts" not in chatml  # a generative model is prompted through its template
    assert "A verifier: the app sends it raw prompts" in render_modelfile(
        "./m.gguf", "<|im_start|>", kind="verifier")


@pytest.mark.parametrize("flags, verifier_types", [
    (["avx2", "fma"], ["Q4_K_M"]),
    (["avx512f", "avx512_bf16"], ["Q4_K_M", "BF16"]),
    (["avx512f", "amx_bf16", "amx_tile"], ["Q4_K_M", "BF16"]),
])
def test_a_verifier_gets_bf16_beside_q4_k_m_only_where_the_cpu_computes_bf16(monkeypatch, flags, verifier_types):
    """The app runs a bundle's BF16 instead of its Q4_K_M on a CPU with native bf16, so the build
    exports it there; where bf16 is emulated it would only slow the build (its stacker refit)."""
    from models import runtimes

    monkeypatch.setattr(runtimes, "cpu_flags", lambda: flags)
    assert export.default_gguf_types("verifier") == verifier_types
    assert export.default_gguf_types("generative") == ["Q4_K_M"]
