"""GGUF models through llama.cpp (llama-cpp-python), the answer constrained by the contract's
grammar. The grammar is the contract's own, fixed and tested; nothing else reaches the native
parser (a malformed grammar can crash it rather than raise)."""
from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from pathlib import Path

from ..contract import GBNF
from . import Cancelled, Generation, ModelRequest, RuntimeUnavailable, ScoreRequest, SlotScores, cpu_flags

GGUF_MAGIC = b"GGUF"


def default_threads() -> int:
    """Threads writing the answer: one per core but one. A token is a tiny piece of work, and
    llama.cpp's spin-waiting threads collapse 10-40x when another process wants a core."""
    env = os.environ.get("ICD10_CODER_THREADS")
    return int(env) if env else max(1, (os.cpu_count() or 2) - 1)


def default_batch_threads() -> int:
    """Threads reading the prompt: every core. A batch of hundreds of tokens is large work per
    synchronisation, and the prompt is most of a note's time (`builder benchmark`: on 2 cores,
    1 answer + 2 prompt threads is 1.4x faster than 1 + 1, within 10% of 2 + 2)."""
    env = os.environ.get("ICD10_CODER_BATCH_THREADS")
    return int(env) if env else os.cpu_count() or 1


def check_gguf(path: Path) -> None:
    if not path.is_file():
        raise RuntimeUnavailable(f"{path} does not exist. Build a model with `make all` or pick a .gguf file.")
    with open(path, "rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            raise RuntimeUnavailable(f"{path} is not a GGUF model file (wrong header). Pick the "
                                     ".gguf file the builder wrote, or rebuild it.")


def amx_kernels_unsafe(llama_cpp) -> bool:
    """Whether llama.cpp would run its AMX kernels here: built with them (a native build on a CPU
    that has AMX) and on a CPU that has AMX. Those kernels crash the process with an illegal
    instruction at their first tile load (seen with llama-cpp-python 0.3.36 on Sapphire Rapids:
    SIGILL at `tileloadd` in libggml-cpu for Q4_K_M and Q4_1 GGUFs; llama.cpp PR #26954
    describes the cause, an invalid tile configuration)."""
    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    return "AMX_INT8 = 1" in info and "amx_int8" in cpu_flags()


_PARAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def safe_model_params(llama_cpp):
    """Models loaded inside use llama.cpp's plain CPU buffers where its AMX kernels would crash
    (`amx_kernels_unsafe`): `use_extra_bufts = False` keeps AMX out (and the repacked Q4_0/Q4_K
    layouts, the only cost). llama_cpp.Llama takes no such argument, so its default parameters
    are wrapped while it loads."""
    if not amx_kernels_unsafe(llama_cpp):
        yield
        return
    module = llama_cpp.llama_cpp
    with _PARAMS_LOCK:
        default = module.llama_model_default_params

        def without_extra_buffers():
            params = default()
            params.use_extra_bufts = False
            return params

        module.llama_model_default_params = without_extra_buffers
        try:
            yield
        finally:
            module.llama_model_default_params = default


def load_llama(path: str | Path, llama_class=None, **kwargs):
    """A llama_cpp.Llama (or `llama_class`) for a GGUF, safe on every CPU (safe_model_params)."""
    import llama_cpp

    with safe_model_params(llama_cpp):
        return (llama_class or llama_cpp.Llama)(str(path), **kwargs)


@functools.cache
def counting_llama_class(llama_cpp):
    """llama_cpp.Llama that counts the tokens of its last completion: the prompt exactly as given
    to the model, and the tokens it generated. Stream chunks are not tokens: a chunk carries the
    text of several tokens where a character spans them (emoji, CJK) or text was held back as a
    possible stop sequence, and the token that hits max_tokens is never evaluated."""

    class CountingLlama(llama_cpp.Llama):
        prompt_token_count = 0
        generated_token_count = 0

        def generate(self, tokens, *args, **kwargs):
            # Every completion, chat or not, goes through here with its full prompt.
            # llama-cpp-python iterates this with a plain for loop: nothing is ever sent in.
            vocab = llama_cpp.llama_model_get_vocab(self.model)
            self.prompt_token_count = len(tokens)
            self.generated_token_count = 0
            for token in super().generate(tokens, *args, **kwargs):
                # The end-of-turn token ends the answer and is not part of it (as in
                # llama-cpp-python's own usage counts).
                if not llama_cpp.llama_vocab_is_eog(vocab, token):
                    self.generated_token_count += 1
                yield token

    return CountingLlama


class LlamaCppRuntime:
    def __init__(self, model: str, threads: int | None = None, n_ctx: int = 4096,
                 constrained: bool = True, batch_threads: int | None = None,
                 flash_attn: bool = True):
        path = Path(model)
        check_gguf(path)
        try:
            import llama_cpp
        except ImportError as exc:
            raise RuntimeUnavailable("llama-cpp-python is not installed (`make setup`).") from exc
        self.name = f"llama.cpp:{path}"
        self.threads = threads or default_threads()  # generating the answer, token by token
        self.batch_threads = batch_threads or (threads or default_batch_threads())  # the prompt
        started = time.perf_counter()
        try:
            self.llm = load_llama(path, counting_llama_class(llama_cpp), n_ctx=n_ctx,
                                  n_threads=self.threads, n_threads_batch=self.batch_threads,
                                  verbose=False, seed=0, flash_attn=flash_attn)
        except (ValueError, RuntimeError, OSError) as exc:
            raise RuntimeUnavailable(f"llama.cpp could not load {path}: {exc}. The file may be "
                                     "truncated or corrupt: rebuild or download it again.") from exc
        self.load_seconds = time.perf_counter() - started
        self.grammar = llama_cpp.LlamaGrammar.from_string(GBNF, verbose=False) if constrained else None

    def generate(self, request: ModelRequest) -> Generation:
        # Streamed, so a cancel is seen after every token. (An exception raised in a logits
        # processor does not stop llama-cpp-python: it runs in a ctypes callback, which only
        # prints the exception and goes on generating.)
        cancel = request.cancel
        stream = self.llm.create_chat_completion(request.messages, grammar=self.grammar,
                                                 max_tokens=request.max_tokens, temperature=0.0,
                                                 stream=True)
        parts: list[str] = []
        try:
            for chunk in stream:
                if cancel is not None and cancel.is_set():
                    raise Cancelled()
                parts.append(chunk["choices"][0]["delta"].get("content") or "")
        finally:
            stream.close()  # stops generation when we leave early
        return Generation("".join(parts), self.llm.prompt_token_count, self.llm.generated_token_count)

    def tokenize(self, text: str, bos: bool = False) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=bos, special=False)

    def score(self, request: ScoreRequest) -> SlotScores:
        """Decode the ids batch by batch (a cancel is seen between batches), asking llama.cpp for
        logits only at the slots: per-position logits in process, which its server cannot give."""
        import llama_cpp

        ctx, n = self.llm.ctx, len(request.ids)
        if n > self.llm.n_ctx():
            raise RuntimeUnavailable(f"{n} tokens do not fit the model's context of "
                                     f"{self.llm.n_ctx()}: split the note.")
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        self.llm.n_tokens = 0  # the chat path's prefix cache is gone with the memory
        wanted = {pos: j for j, pos in enumerate(request.slots)}
        margins = [0.0] * len(request.slots)
        yes, no = request.choices
        step = self.llm.n_batch
        batch = llama_cpp.llama_batch_init(step, 0, 1)
        try:
            for start in range(0, n, step):
                if request.cancel is not None and request.cancel.is_set():
                    raise Cancelled()
                chunk = request.ids[start:start + step]
                batch.n_tokens = len(chunk)
                for i, token in enumerate(chunk):
                    batch.token[i] = token
                    batch.pos[i] = start + i
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = (start + i) in wanted
                if llama_cpp.llama_decode(ctx, batch) != 0:
                    raise RuntimeUnavailable(f"llama.cpp could not read {n} tokens (decode failed).")
                for i in range(len(chunk)):
                    if start + i in wanted:
                        row = llama_cpp.llama_get_logits_ith(ctx, i)
                        margins[wanted[start + i]] = float(row[yes] - row[no])
        finally:
            llama_cpp.llama_batch_free(batch)
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        return SlotScores(margins, n)

    def close(self) -> None:
        self.llm = None
