"""`python -m builder export`: the merged model as GGUF (llama.cpp) and ONNX (ONNX Runtime).

GGUF: llama.cpp's own converter (pinned, see llama_cpp_tools) writes F16, then
`llama_model_quantize` makes each requested type. ONNX: optimum exports fp32 with KV cache, then
onnxruntime's dynamic INT8 weight quantization. Every file is written to a temp name and renamed;
every export is verified before it is recorded: it loads, answers a sample note through the
contract, and the answer parses. fp32 ONNX must also match the merged PyTorch model's greedy
tokens on a fixed prompt set. An Ollama Modelfile is written next to the default GGUF.
"""
from __future__ import annotations

import errno
import hashlib
import json
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from builder.answer_check import CHECK_NOTES, AnswerCheckFailed, check_model
from builder.base_model import byte_level_fix
from builder.config import BuildConfig
from builder.llama_cpp_tools import converter_env, ensure_converter
from models.errors import CoderError
from models.files import atomic_dir, atomic_path, sha256_file, write_text_atomic

GGUF_TYPES = ("F16", "BF16", "Q8_0", "Q5_K_M", "Q4_K_M", "Q4_0", "Q2_K")
DEFAULT_GGUF = "Q4_K_M"
ONNX_TYPES = ("fp32", "int8")
MODEL_NAME = "icd10-coder"

class ExportError(CoderError, RuntimeError):
    pass


def default_gguf_types(model_kind: str) -> list[str]:
    """Q4_K_M, the bundle's default everywhere; and, for a verifier exported on a CPU with native
    bf16 (AVX512-BF16, AMX), BF16 beside it, which the app runs instead on such CPUs
    (`Bundle.model_to_run`): there it reads a prompt faster at full precision (`builder
    benchmark`, 2 cores with AVX512-BF16: 0.98 s a note against Q4_K_M's 1.25 s). Not elsewhere:
    refitting its stacker reads 250 notes, 3-8x slower where bf16 is emulated."""
    from models.runtimes import cpu_has_native_bf16

    if model_kind == "verifier" and cpu_has_native_bf16():
        return [DEFAULT_GGUF, "BF16"]
    return [DEFAULT_GGUF]


def _disk_full(folder: Path, error: BaseException) -> bool:
    """Did a write into `folder` fail for lack of space? Asked while the partial file still
    exists (inside `atomic_path`), so the disk is still as full as the write left it."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    if "No space left on device" in str(error):
        return True
    try:
        return shutil.disk_usage(folder).free < 1024 * 1024
    except OSError:
        return False


def _no_space(folder: Path, what: str) -> ExportError:
    free = shutil.disk_usage(folder).free / 1e6 if folder.exists() else 0.0
    return ExportError(f"No space left on the disk of {folder} while writing {what} ({free:.0f} MB "
                       "free). Free some space, or export a run folder on a larger disk "
                       "(--run-dir). Nothing half-written was left there.")


@contextmanager
def _writing(out: Path, what: str, directory: bool = False):
    """Atomic write of a file or folder; a failure for lack of space says so."""
    with (atomic_dir(out) if directory else atomic_path(out)) as tmp:
        try:
            yield tmp
        except Exception as exc:
            if _disk_full(out.parent, exc):
                raise _no_space(out.parent, what) from exc
            raise


def gguf_path(run_dir: Path, qtype: str) -> Path:
    return Path(run_dir) / "gguf" / f"{MODEL_NAME}-{qtype}.gguf"


def onnx_path(run_dir: Path, kind: str) -> Path:
    return Path(run_dir) / "onnx" / kind


# --- GGUF ------------------------------------------------------------------------------------
def convert_f16(merged: Path, out: Path) -> None:
    folder = ensure_converter()
    tokenizer_json = merged / "tokenizer.json"
    if tokenizer_json.exists() and byte_level_fix(json.loads(tokenizer_json.read_text())):
        raise ExportError(f"{merged} has SmolLM2's tokenizer in the lossy form transformers reads "
                          "from a GGUF (digits not split as in pretraining). Train again: the "
                          "builder now writes the tokenizer as published.")
    with _writing(out, out.name) as tmp:
        proc = subprocess.run([sys.executable, str(folder / "convert_hf_to_gguf.py"), str(merged),
                               "--outtype", "f16", "--outfile", str(tmp)],
                              env=converter_env(folder), capture_output=True, text=True)
        if proc.returncode != 0:  # `_writing` turns it into "no space" when that is the cause
            raise ExportError(f"convert_hf_to_gguf.py failed ({proc.returncode}):\n"
                              f"{proc.stderr[-2000:]}")


def quantize(f16: Path, out: Path, qtype: str, threads: int = 0) -> None:
    import llama_cpp

    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{qtype}", None)
    if ftype is None:
        raise ExportError(f"Unknown GGUF type {qtype}; choose from {', '.join(GGUF_TYPES)}.")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    with _writing(out, out.name) as tmp:  # a failed quantize leaves no file under the final name
        rc = llama_cpp.llama_model_quantize(str(f16).encode(), str(tmp).encode(), params)
        if rc != 0:
            raise ExportError(f"llama_model_quantize to {qtype} failed (code {rc}).")


def gguf_metadata(path: Path) -> dict:
    """The fields the app and Ollama rely on: chat template and stop token."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))

    def field(name):
        f = reader.fields.get(name)
        return f.contents() if f is not None else None

    tokens = field("tokenizer.ggml.tokens") or []
    eos = field("tokenizer.ggml.eos_token_id")
    return {"chat_template": field("tokenizer.chat_template"), "eos_token_id": eos,
            "tokenizer_model": field("tokenizer.ggml.model"),
            "eos_token": tokens[eos] if isinstance(eos, int) and eos < len(tokens) else None,
            "file_type": field("general.file_type"), "tensors": len(reader.tensors)}


def export_gguf(merged: Path, run_dir: Path, qtypes: list[str], threads: int = 0) -> list[Path]:
    qtypes = [q.upper() for q in qtypes]
    for q in qtypes:
        if q not in GGUF_TYPES:
            raise ExportError(f"Unknown GGUF type {q}; choose from {', '.join(GGUF_TYPES)}.")
    f16 = gguf_path(run_dir, "F16")
    convert_f16(merged, f16)
    written = [f16] if "F16" in qtypes else []
    try:
        for q in qtypes:
            if q != "F16":
                quantize(f16, gguf_path(run_dir, q), q, threads)
                written.append(gguf_path(run_dir, q))
    finally:
        if "F16" not in qtypes:
            f16.unlink(missing_ok=True)
    return written


def _recorded_stages(run_dir: Path) -> dict:
    from builder.manifest import read

    try:
        return read(run_dir)["stages"]
    except (OSError, ValueError, KeyError):
        return {}


def merged_fingerprint(merged: Path, merge_record: dict) -> str:
    """sha256 over the merged model's weight files: the checksums `merge` recorded (hashing an
    8B model again takes a minute) where the file is still the size recorded, else computed."""
    recorded = merge_record.get("outputs", {})
    sums = []
    for path in sorted(merged.glob("*.safetensors")):
        entry = recorded.get(f"{merged.name}/{path.name}")
        fresh = entry and entry.get("bytes") == path.stat().st_size
        sums.append(f"{path.name}:{entry['sha256'] if fresh else sha256_file(path)}")
    return hashlib.sha256("\n".join(sums).encode()).hexdigest()


def _made_from(previous: dict, merge_record: dict, fingerprint: str) -> bool:
    """Were the exports of this earlier record made from the merged model `fingerprint` names?
    A record written before fingerprints were kept: when it is newer than the last merge."""
    recorded = previous.get("inputs", {}).get("merged_sha256")
    if recorded:
        return recorded == fingerprint
    merged_at = merge_record.get("finished_at", "")
    return bool(merged_at) and previous.get("finished_at", "") >= merged_at


def _is_byte_level(merged: Path) -> bool:
    tokenizer_json = merged / "tokenizer.json"
    if not tokenizer_json.exists():
        return False
    return (json.loads(tokenizer_json.read_text()).get("pre_tokenizer") or {}).get("type") == "ByteLevel"


# --- ONNX ------------------------------------------------------------------------------------
def export_onnx_fp32(merged: Path, out: Path) -> Path:
    from optimum.exporters.onnx import main_export

    with _writing(out, f"the ONNX model {out.name}", directory=True) as tmp:
        main_export(str(merged), tmp, task="text-generation-with-past", device="cpu",
                    do_validation=False, local_files_only=True)
        if (merged / "chat_template.jinja").exists() and not (tmp / "chat_template.jinja").exists():
            shutil.copy2(merged / "chat_template.jinja", tmp / "chat_template.jinja")
    return out


def quantize_onnx_int8(fp32: Path, out: Path) -> Path:
    # Signed INT8 weights, per tensor: per-channel produced garbage on this AVX2-only CPU and
    # unsigned weights saturate on VNNI-less CPUs (onnxruntime's own advice).
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _writing(out, f"the ONNX model {out.name}", directory=True) as tmp:
        shutil.copytree(fp32, tmp, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.onnx", "*.onnx_data"))
        quantize_dynamic(fp32 / "model.onnx", tmp / "model.onnx", weight_type=QuantType.QInt8,
                         per_channel=False)
    return out


def greedy_tokens_match(merged: Path, onnx_dir: Path, max_tokens: int = 24) -> dict:
    """Compare greedy token ids of PyTorch fp32 and ONNX on CHECK_NOTES (the prompts with
    candidates, as the app builds them)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from models.pipeline import Pipeline
    from models.runtimes.onnx_runtime import OnnxRuntime
    from models.select import ThresholdSelector

    tok = AutoTokenizer.from_pretrained(merged)
    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    onnx = OnnxRuntime(str(onnx_dir))
    pipeline = Pipeline(ThresholdSelector())  # only its prompt_messages are used
    mismatches = []
    for i, note in enumerate(CHECK_NOTES):
        messages = pipeline.prompt_messages(note)
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens,
                                 do_sample=False, eos_token_id=onnx.stop_ids, pad_token_id=onnx.stop_ids[0])
        torch_ids = out[0, ids.shape[1]:].tolist()
        while torch_ids and torch_ids[-1] in onnx.stop_ids:  # generate() keeps the stop token
            torch_ids.pop()
        onnx_ids = onnx.generate_ids(ids[0].tolist(), max_tokens)
        if torch_ids != onnx_ids:
            mismatches.append({"note": i, "torch": torch_ids, "onnx": onnx_ids})
    return {"prompts": len(CHECK_NOTES), "tokens_each": max_tokens, "mismatches": mismatches}


HOLDOUT_FILE = "holdout_scores.jsonl"  # builder/stages/verifier.py writes it
STACKER_SUFFIX = ".stacker.json"  # beside a verifier GGUF: the stacker fitted on its margins


def verifier_scores_match(merged: Path, onnx_dir: Path) -> dict:
    """The largest difference between PyTorch fp32 and ONNX fp32 verifier margins on CHECK_NOTES."""
    from models.pipeline import Pipeline
    from models.runtimes.onnx_runtime import OnnxRuntime
    from models.runtimes.transformers_runtime import TransformersRuntime
    from models.select import Stacker, VerifierSelector

    torch_sel = VerifierSelector(TransformersRuntime(str(merged)), Stacker.verifier_alone())
    onnx_sel = VerifierSelector(OnnxRuntime(str(onnx_dir)), Stacker.verifier_alone())
    pipeline = Pipeline(torch_sel)
    worst = 0.0
    for note in CHECK_NOTES:
        candidates = pipeline.retrieve(note)
        a, _ = torch_sel.judge(note, candidates)
        b, _ = onnx_sel.judge(note, candidates)
        worst = max([worst] + [abs(x[1] - y[1]) for x, y in zip(a, b)])
    return {"notes": len(CHECK_NOTES), "max_difference": round(worst, 5)}


# --- verification, Modelfile ------------------------------------------------------------------
def verify(model: Path, kind: str = "generative") -> dict:
    try:
        return check_model(str(model), kind)
    except AnswerCheckFailed as exc:
        raise ExportError(str(exc)) from exc


def write_modelfile(gguf: Path, chat_template: str, kind: str = "generative") -> Path:
    from builder.distribution.modelfile import render_modelfile

    path = gguf.parent / "Modelfile"
    write_text_atomic(path, render_modelfile(f"./{gguf.name}", chat_template, kind=kind))
    return path


def run(cfg: BuildConfig, formats: list[str] | None = None, gguf_types: list[str] | None = None,
        onnx_types: list[str] | None = None) -> dict:
    from builder.manifest import record_stage

    started = time.perf_counter()
    run_dir = Path(cfg.run_dir)
    merged = run_dir / "merged"
    if not (merged / "config.json").exists():
        raise ExportError(f"No merged model in {merged}: run `python -m builder merge` first.")
    formats = formats or ["gguf", "onnx"]
    unknown = set(formats) - {"gguf", "onnx"}
    if unknown:
        raise ExportError(f"Unknown format(s) {sorted(unknown)}: use gguf and/or onnx.")
    gguf_types = gguf_types or default_gguf_types(cfg.model_kind)
    onnx_types = onnx_types or list(ONNX_TYPES)
    report: dict = {"gguf": {}, "onnx": {}}
    outputs: list[Path] = []

    if "gguf" in formats:
        t = time.perf_counter()
        files = export_gguf(merged, run_dir, gguf_types)
        report["gguf_seconds"] = round(time.perf_counter() - t, 1)
        for path in files:
            meta = gguf_metadata(path)
            if meta["tokenizer_model"] != "gpt2" and _is_byte_level(merged):
                # llama.cpp would abort the process on the first prompt, not raise.
                raise ExportError(f"{path.name} got a {meta['tokenizer_model']!r} vocabulary for "
                                  "a byte-level BPE tokenizer; refusing to load it.")
            template = meta["chat_template"] or ""
            if not template or ("<|im_end|>" in template and meta["eos_token"] != "<|im_end|>"):
                raise ExportError(f"{path.name} lacks the chat template or the <|im_end|> stop "
                                  f"token (eos={meta['eos_token']!r}).")
            report["gguf"][path.name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path),
                                         "eos_token": meta["eos_token"], "verify": verify(path, cfg.model_kind)}
            outputs.append(path)
            if cfg.model_kind == "verifier" and (run_dir / "verifier" / HOLDOUT_FILE).exists():
                # Its stacker, refitted on this file's own margins (a run without the verifier
                # stage's held-out cases keeps the stage's stacker).
                from builder.stages.verifier import calibrate

                calibrated = calibrate(run_dir, path)
                sidecar = path.with_name(path.name + STACKER_SUFFIX)
                write_text_atomic(sidecar, json.dumps(calibrated["stacker"], indent=1))
                report["gguf"][path.name]["stacker"] = {k: v for k, v in calibrated.items() if k != "stacker"}
                outputs.append(sidecar)
        # The Modelfile names the default type whenever the run has it (exported now or before).
        default = gguf_path(run_dir, DEFAULT_GGUF)
        if DEFAULT_GGUF not in [q.upper() for q in gguf_types] and not default.exists():
            default = gguf_path(run_dir, gguf_types[0].upper())
        modelfile = write_modelfile(default, gguf_metadata(default)["chat_template"], cfg.model_kind)
        report["modelfile"] = str(modelfile)
        outputs.append(modelfile)

    if "onnx" in formats:
        bad = set(onnx_types) - set(ONNX_TYPES)
        if bad:
            raise ExportError(f"Unknown ONNX type(s) {sorted(bad)}: use fp32 and/or int8.")
        t = time.perf_counter()
        fp32 = export_onnx_fp32(merged, onnx_path(run_dir, "fp32"))
        if cfg.model_kind == "verifier":
            match = verifier_scores_match(merged, fp32)
            if match["max_difference"] > 0.05:
                raise ExportError(f"ONNX fp32 verifier scores differ from PyTorch by {match['max_difference']}")
            report["onnx"]["fp32"] = {"scores_match": match}
        else:
            match = greedy_tokens_match(merged, fp32)
            if match["mismatches"]:
                raise ExportError(f"ONNX fp32 greedy tokens differ from PyTorch: {match['mismatches'][:1]}")
            report["onnx"]["fp32"] = {"greedy_match": match}
        if "int8" in onnx_types:
            quantize_onnx_int8(fp32, onnx_path(run_dir, "int8"))
        report["onnx_seconds"] = round(time.perf_counter() - t, 1)
        for kind in onnx_types:
            folder = onnx_path(run_dir, kind)
            model_file = folder / "model.onnx"
            report["onnx"].setdefault(kind, {}).update(
                {"bytes": model_file.stat().st_size, "sha256": sha256_file(model_file),
                 "verify": verify(folder, cfg.model_kind)})
            outputs += sorted(p for p in folder.iterdir() if p.is_file())
        if "fp32" not in onnx_types:  # made only to quantize from
            shutil.rmtree(onnx_path(run_dir, "fp32"), ignore_errors=True)

    # Exports made earlier (another format or type) stay listed while their files exist, when
    # they were made from this same merged model: the app finds models through this manifest.
    # After a retrain, an old file would pass for the new model: it is left out, and said so.
    stages = _recorded_stages(run_dir)
    previous, merge_record = stages.get("export") or {}, stages.get("merge") or {}
    made_from = merged_fingerprint(merged, merge_record)
    if previous and not _made_from(previous, merge_record, made_from):
        stale = sorted(rel for rel in previous.get("outputs", {})
                       if rel.endswith((".gguf", "model.onnx")) and (run_dir / rel).is_file()
                       and run_dir / rel not in outputs)
        if stale:
            report["not_kept"] = {"files": stale, "why": "made from another merged model: export "
                                  "them again (--format, --quantize) to keep them"}
            print(f"export: not listing {', '.join(stale)}: made from another merged model "
                  "(export them again to keep them).", file=sys.stderr)
        previous = {}
    for rel in previous.get("outputs", {}):
        path = run_dir / rel
        if path.is_file() and path not in outputs:
            outputs.append(path)
    for fmt in ("gguf", "onnx"):
        for name, entry in previous.get("exports", {}).get(fmt, {}).items():
            kept = (run_dir / "gguf" / name) if fmt == "gguf" else onnx_path(run_dir, name) / "model.onnx"
            if name not in report[fmt] and kept.exists():
                report[fmt][name] = entry
    record_stage(run_dir, "export", {"formats": formats, "gguf_types": gguf_types,
                                     "onnx_types": onnx_types},
                 {"merged": str(merged), "merged_sha256": made_from}, outputs,
                 time.perf_counter() - started, {"exports": report})
    return report
