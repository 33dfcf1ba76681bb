"""Ways of running a model, behind one small interface.

A runtime runs a model and does only that: it turns a `ModelRequest` (the contract's chat
messages, an answer budget, a cancel event) into answer text, and counts the real tokens; the
selector (models/select.py) builds the messages and parses the answer. `open_runtime(spec)`
picks one:

- a `.gguf` file: llama.cpp, constrained by the contract's grammar.
- a folder with model.onnx (from `builder export`): ONNX Runtime, no torch.
- a folder with config.json, or an HF id: `transformers` (torch is imported only then), in
  bf16 on a CPU with AMX and fp32 elsewhere unless `dtype` says (`auto_dtype`).
- `ollama:NAME` or `ollama:URL#NAME`: a model served by Ollama.
- `openai:URL#MODEL`: any OpenAI-compatible server (LM Studio, llama-cpp-python's server, vLLM).

Servers must be on this machine unless the caller passes `allow_remote=True` (see models/net.py).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import CoderError


def cpu_flags() -> list[str]:
    """The instruction-set flags the CPU reports (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as fh:
            return next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        return []


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matrix products run about 2x fp32 there (without them, bf16 is
    emulated and 3-8x slower, measured on an AVX2-only CPU)."""
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_has_amx_bf16() -> bool:
    """AMX tiles for bf16 (Intel Xeon since Sapphire Rapids): torch's bf16 matrix products run
    there about 7x its fp32 ones (2,800 against 400 GFLOP/s on 2 cores), where llama.cpp has no
    working AMX path (`llamacpp_runtime.amx_kernels_unsafe`)."""
    return "amx_bf16" in cpu_flags()


def torch_installed() -> bool:
    """torch and transformers can be imported (a builder install; the packaged app has neither)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("torch", "transformers"))


class Cancelled(Exception):
    """The user cancelled; runtimes raise it mid-generation when `request.cancel` is set."""


class RuntimeUnavailable(CoderError, RuntimeError):
    """The runtime cannot start; the message says why and what to do."""


@dataclass
class ModelRequest:
    messages: list[dict]  # the contract's chat messages (system + user)
    max_tokens: int = 384
    cancel: threading.Event | None = None  # set: stop within a token, raise Cancelled


@dataclass
class Generation:
    text: str
    prompt_tokens: int = 0  # as the model's own tokenizer counts them
    completion_tokens: int = 0


class Runtime(Protocol):
    name: str  # e.g. "llama.cpp:/path/model.gguf", "transformers:/path/to/model"

    def generate(self, request: ModelRequest) -> Generation: ...

    def close(self) -> None: ...


@dataclass
class ScoreRequest:
    """Token ids read in one forward pass, and where to read two tokens' logits (the verifier's
    decision slots: `choices` = the ids of " yes" and " no")."""

    ids: list[int]
    slots: list[int]
    choices: tuple[int, int]
    cancel: threading.Event | None = None


@dataclass
class SlotScores:
    margins: list[float]  # logit(choices[0]) - logit(choices[1]) at each slot
    prompt_tokens: int = 0


class Scorer(Protocol):
    """A local runtime that can also read logits at given positions (llama.cpp, ONNX Runtime,
    transformers). Servers cannot: they return no log-probabilities for prompt tokens."""

    name: str

    def tokenize(self, text: str, bos: bool = False) -> list[int]: ...

    def score(self, request: ScoreRequest) -> SlotScores: ...

    def close(self) -> None: ...


class TextDecider(Protocol):
    """A server that reads a raw prompt and returns the top log-probabilities of the one token it
    generates (llama.cpp's server, vLLM): a verifier's decision per prompt."""

    name: str

    def decide(self, prompts: list[str], choices: tuple[str, str],
               cancel: threading.Event | None = None) -> SlotScores: ...

    def close(self) -> None: ...


def open_runtime(spec: str, **options) -> Runtime:
    if spec.startswith("ollama:"):
        from .ollama_runtime import OllamaRuntime

        return OllamaRuntime(spec[len("ollama:"):], **_server_options(options))
    if spec.startswith("openai:"):
        from .openai_runtime import OpenAICompatibleRuntime

        return OpenAICompatibleRuntime(spec[len("openai:"):], **_server_options(options))
    options.pop("allow_remote", None)  # only servers can be remote
    if spec == "retrieval":
        raise RuntimeUnavailable("`retrieval` is no model: it selects by the ranker's threshold "
                                 "(models.select.open_selector('retrieval')).")
    path = Path(spec)
    if path.suffix.lower() == ".gguf":
        from .llamacpp_runtime import LlamaCppRuntime

        return LlamaCppRuntime(spec, **options)
    if path.is_dir() and (path / "model.onnx").exists():
        from .onnx_runtime import OnnxRuntime

        return OnnxRuntime(spec, **options)
    if path.is_dir() and (path / "config.json").exists() or (not path.exists() and "/" in spec):
        from .transformers_runtime import TransformersRuntime

        return TransformersRuntime(spec, **{"dtype": "auto", **options})  # bf16 on AMX
    if path.is_dir():
        raise RuntimeUnavailable(f"{spec} is a folder with neither model.onnx nor config.json: "
                                 "give an exported ONNX folder, a Hugging Face model folder (merged "
                                 "model), or `retrieval`.")
    raise RuntimeUnavailable(f"Don't know how to run {spec!r}. Use `retrieval`, a .gguf file, an "
                             "ONNX folder, a Hugging Face model folder, ollama:NAME or "
                             "openai:URL#MODEL.")


def destination(spec: str) -> str | None:
    """The server a spec sends notes to (for the privacy check), None for local models."""
    if spec.startswith("ollama:"):
        from .ollama_runtime import split_spec

        return split_spec(spec[len("ollama:"):])[0]
    if spec.startswith("openai:"):
        from .openai_runtime import split_spec

        return split_spec(spec[len("openai:"):])[0]
    return None


def _server_options(options: dict) -> dict:
    # Local-only options (threads, ...) mean nothing to a server; the privacy opt-in does.
    return {k: v for k, v in options.items() if k in ("allow_remote", "timeout")}
