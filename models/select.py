"""Selection: which of a chunk's candidate codes the note supports, and how sure.

The seam between retrieval and validation, with two kinds today:

- `ThresholdSelector` ("retrieval"): the candidates whose ranker probability clears the bundle's
  threshold. No model, no text in between.
- `ModelSelector`: a language model, through a runtime (models/runtimes), reads the note and the
  candidates as the contract lays them out and writes the codes it keeps; the contract's parser
  reads them back.

Each returns a `Selection`: the chosen codes (`CodedItem`, with the chooser's probability), what
was dropped and why, the raw answer, and the real token counts.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

from .contract import Candidate, CodedItem, Rejected, build_messages, parse_answer
from .runtimes import ModelRequest, Runtime, open_runtime


@dataclass
class Selection:
    chosen: list[CodedItem]
    rejected: list[Rejected] = field(default_factory=list)
    raw_answer: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Selector(Protocol):
    name: str  # e.g. "retrieval", "llama.cpp:/path/model.gguf"

    def select(self, text: str, candidates: list[Candidate],
               cancel: threading.Event | None = None) -> Selection: ...

    def close(self) -> None: ...


class ThresholdSelector:
    """The ranker alone: every candidate at or above the threshold, its probability its own."""

    name = "retrieval"

    def __init__(self, threshold: float | None = None, max_codes: int = 30):
        self.threshold = threshold  # None: the retriever's (the bundle's), set by the pipeline
        self.max_codes = max_codes

    def select(self, text: str, candidates: list[Candidate], cancel: threading.Event | None = None,
               threshold: float = 0.5) -> Selection:
        limit = self.threshold if self.threshold is not None else threshold
        # No quote: the evidence step narrows the span retrieval matched to the phrase itself.
        chosen = [CodedItem(c.code, "", c.score) for c in candidates if c.score >= limit]
        return Selection(chosen[: self.max_codes])

    def close(self) -> None:
        pass


class ModelSelector:
    """A model writes the codes it keeps among the candidates shown (the contract's prompt).

    Its probability for a code it chose: half-confirmed by the model, the rest from the ranker
    (0.5 + half the ranker's probability; 0.5 for a code that was not a candidate).
    """

    def __init__(self, runtime: Runtime, candidates: int = 20, use_candidates: bool = True,
                 max_tokens: int = 384):
        self.runtime = runtime
        self.name = runtime.name
        self.k = candidates
        self.use_candidates = use_candidates
        self.max_tokens = max_tokens

    def messages(self, text: str, candidates: list[Candidate]) -> list[dict]:
        """The chat messages the model reads for one chunk (also for checks and exports)."""
        return build_messages(text, candidates[: self.k] if self.use_candidates else [])

    def select(self, text: str, candidates: list[Candidate], cancel: threading.Event | None = None,
               threshold: float = 0.5) -> Selection:
        generation = self.runtime.generate(ModelRequest(self.messages(text, candidates), self.max_tokens, cancel))
        parsed = parse_answer(generation.text)
        ranker = {c.code: c.score for c in candidates}
        chosen = [CodedItem(i.code, i.evidence, 0.5 + 0.5 * ranker.get(i.code, 0.0)) for i in parsed.items]
        return Selection(chosen, parsed.dropped, generation.text, generation.prompt_tokens,
                         generation.completion_tokens)

    def close(self) -> None:
        self.runtime.close()


def open_selector(spec: str, candidates: int = 20, use_candidates: bool = True,
                  max_tokens: int = 384, **runtime_options) -> Selector:
    """`retrieval` for the ranker alone; anything else is a model (`open_runtime`'s specs)."""
    if spec == "retrieval":
        return ThresholdSelector()
    return ModelSelector(open_runtime(spec, **runtime_options), candidates, use_candidates, max_tokens)
