"""`python -m builder merge`: fold the LoRA adapter into the full-precision base model.

For a verifier whose head was fitted on the frozen base (`verifier.method = "head"`), the merged
model is the base cut after the head's layer with the head as its output layer.

Never merges into 4-bit weights: the base is reloaded in fp32 (bf16 on CUDA), the adapter applied
and merged, and the result saved as safetensors with the tokenizer and its chat template in
<run>/merged (built in a temp folder, then renamed). A smoke generation through the pipeline must
produce an answer the contract can parse.
"""
from __future__ import annotations

import time
from pathlib import Path

from builder.config import BuildConfig
from builder.stages.verifier_head import HEAD_FILE
from models.errors import CoderError
from models.files import atomic_dir


class MergeError(CoderError, RuntimeError):
    pass


def run(cfg: BuildConfig) -> dict:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from builder.answer_check import AnswerCheckFailed, check_model
    from builder.base_model import ensure_base_model
    from builder.manifest import record_stage

    started = time.perf_counter()
    run_dir = Path(cfg.run_dir)
    stage = "verifier" if cfg.model_kind == "verifier" else "train"
    base = ensure_base_model(cfg.base_model)
    out = run_dir / "merged"
    if stage == "verifier" and cfg.verifier.method == "head":
        adapter = _merge_head(run_dir / stage / HEAD_FILE, base, out)
    else:
        adapter = run_dir / stage / "adapter"
        if not (adapter / "adapter_config.json").exists():
            raise MergeError(f"No adapter at {adapter}: run `python -m builder {stage}` first "
                             f"(model_kind={cfg.model_kind}).")
        dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
        model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        tokenizer = AutoTokenizer.from_pretrained(adapter)
        with atomic_dir(out) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
    merge_seconds = time.perf_counter() - started

    try:
        smoke = check_model(str(out), cfg.model_kind)
    except AnswerCheckFailed as exc:
        raise MergeError(f"{exc}. Train longer or check the data.") from exc
    outputs = sorted(p for p in out.iterdir() if p.is_file())
    record_stage(run_dir, "merge", {"base_model": cfg.base_model, "model_kind": cfg.model_kind},
                 {"base_model": base, "adapter": str(adapter)}, outputs,
                 time.perf_counter() - started, {"smoke": smoke, "merge_seconds": round(merge_seconds, 1)})
    return {"merged": str(out), "merge_seconds": round(merge_seconds, 1), "smoke": smoke}


def _merge_head(head: Path, base: str, out: Path) -> Path:
    """The verifier's head model (`verifier.method = "head"`): the base cut after the head's
    layer, with the head in its output layer. Returns the head file it was built from."""
    from transformers import AutoTokenizer

    from builder.stages.verifier_head import build_head_model, load_head
    from models.contract import decision_token_ids

    if not head.exists():
        raise MergeError(f"No verifier head at {head}: run `python -m builder verifier` first "
                         "(verifier.method=head).")
    layer, direction, _, lift = load_head(head)
    tokenizer = AutoTokenizer.from_pretrained(base)
    choices = decision_token_ids(lambda text, bos=False: tokenizer(text, add_special_tokens=bos).input_ids)
    with atomic_dir(out) as tmp:
        build_head_model(base, layer, direction, choices, tmp, lift)
    return head
