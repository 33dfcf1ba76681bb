"""The model-free runtime: answer with the candidates whose ranker score clears a threshold."""
from __future__ import annotations

from ..contract import CodedItem, format_answer
from . import ModelRequest


class RetrievalRuntime:
    name = "retrieval"

    def __init__(self, threshold: float | None = None, max_codes: int = 30):
        self.threshold = threshold  # None: the ranker's tuned threshold (set by the pipeline)
        self.max_codes = max_codes

    def answer(self, request: ModelRequest) -> str:
        threshold = self.threshold if self.threshold is not None else request.options.get("threshold", 0.5)
        chosen = [c for c in request.candidates if c.score >= threshold][: self.max_codes]
        return format_answer(CodedItem(c.code, request.note[c.start:c.end]) for c in chosen)

    def close(self) -> None:
        pass
