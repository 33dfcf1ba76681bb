"""Ways of running a model, behind one small interface.

A runtime turns a `ModelRequest` (the note, its candidates, and the contract's chat messages) into
answer text; the pipeline parses and validates it. `open_runtime(spec)` picks one:

- `retrieval`: no model; the candidates the ranker is confident about.
- a `.gguf` file: llama.cpp, constrained by the contract's grammar.
- a folder with model.onnx (from `builder export`): ONNX Runtime, no torch.
- a folder with config.json, or an HF id: `transformers` (torch is imported only then).
Later: `ollama:NAME`, `openai:URL#MODEL`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..retrieve import RetrievedCode


class Cancelled(Exception):
    """The user cancelled; runtimes raise it mid-generation when `options["cancel"]` is set."""


class RuntimeUnavailable(RuntimeError):
    """The runtime cannot start; the message says why and what to do."""


@dataclass
class ModelRequest:
    note: str
    candidates: list[RetrievedCode]
    messages: list[dict]
    max_tokens: int = 384
    options: dict = field(default_factory=dict)


class Runtime(Protocol):
    name: str  # e.g. "retrieval", "transformers:/path/to/model"

    def answer(self, request: ModelRequest) -> str: ...

    def close(self) -> None: ...


def open_runtime(spec: str, **options) -> Runtime:
    if spec == "retrieval":
        from .retrieval import RetrievalRuntime

        return RetrievalRuntime(**options)
    path = Path(spec)
    if path.suffix.lower() == ".gguf":
        from .llamacpp_runtime import LlamaCppRuntime

        return LlamaCppRuntime(spec, **options)
    if path.is_dir() and (path / "model.onnx").exists():
        from .onnx_runtime import OnnxRuntime

        return OnnxRuntime(spec, **options)
    if path.is_dir() and (path / "config.json").exists() or (not path.exists() and "/" in spec
                                                             and not spec.startswith(("ollama:", "openai:"))):
        from .transformers_runtime import TransformersRuntime

        return TransformersRuntime(spec, **options)
    if path.is_dir():
        raise RuntimeUnavailable(f"{spec} is a folder with neither model.onnx nor config.json: "
                                 "give an exported ONNX folder, a Hugging Face model folder (merged "
                                 "model), or `retrieval`.")
    raise RuntimeUnavailable(f"Don't know how to run {spec!r}. Use `retrieval`, a .gguf file, an "
                             "ONNX folder or a Hugging Face model folder; Ollama and "
                             "OpenAI-compatible servers come later.")
