"""GGUF models through llama.cpp (llama-cpp-python), the answer constrained by the contract's
grammar. The grammar is the contract's own, fixed and tested; nothing else reaches the native
parser (a malformed grammar can crash it rather than raise)."""
from __future__ import annotations

import os
import time
from pathlib import Path

from ..contract import GBNF
from . import Cancelled, ModelRequest, RuntimeUnavailable

GGUF_MAGIC = b"GGUF"


def default_threads() -> int:
    """One thread per core but one; llama.cpp's spin-waiting collapses on an oversubscribed CPU."""
    env = os.environ.get("ICD10_CODER_THREADS")
    return int(env) if env else max(1, (os.cpu_count() or 2) - 1)


def check_gguf(path: Path) -> None:
    if not path.is_file():
        raise RuntimeUnavailable(f"{path} does not exist. Build a model with `make all` or pick a .gguf file.")
    with open(path, "rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            raise RuntimeUnavailable(f"{path} is not a GGUF model file (wrong header). Pick the "
                                     ".gguf file the builder wrote, or rebuild it.")


class LlamaCppRuntime:
    def __init__(self, model: str, threads: int | None = None, n_ctx: int = 4096,
                 constrained: bool = True):
        path = Path(model)
        check_gguf(path)
        try:
            import llama_cpp
        except ImportError as exc:
            raise RuntimeUnavailable("llama-cpp-python is not installed (`make setup`).") from exc
        self.name = f"llama.cpp:{path}"
        self.threads = threads or default_threads()
        started = time.perf_counter()
        try:
            self.llm = llama_cpp.Llama(str(path), n_ctx=n_ctx, n_threads=self.threads,
                                       n_threads_batch=self.threads, verbose=False, seed=0)
        except (ValueError, RuntimeError, OSError) as exc:
            raise RuntimeUnavailable(f"llama.cpp could not load {path}: {exc}. The file may be "
                                     "truncated or corrupt: rebuild or download it again.") from exc
        self.load_seconds = time.perf_counter() - started
        self.grammar = llama_cpp.LlamaGrammar.from_string(GBNF, verbose=False) if constrained else None

    def answer(self, request: ModelRequest) -> str:
        cancel = request.options.get("cancel")
        processors = None
        if cancel is not None:
            import llama_cpp

            def stop_if_cancelled(_ids, logits):  # runs once per token, between native calls
                if cancel.is_set():
                    raise Cancelled()
                return logits
            processors = llama_cpp.LogitsProcessorList([stop_if_cancelled])
        out = self.llm.create_chat_completion(request.messages, grammar=self.grammar,
                                              max_tokens=request.max_tokens, temperature=0.0,
                                              logits_processor=processors)
        usage = out.get("usage", {})
        request.options["prompt_tokens"] = usage.get("prompt_tokens")
        request.options["completion_tokens"] = usage.get("completion_tokens")
        return out["choices"][0]["message"]["content"] or ""

    def close(self) -> None:
        self.llm = None
