"""Selection: which of a chunk's candidate codes the note supports, and how sure.

The seam between retrieval and validation, with two kinds today:

- `ThresholdSelector` ("retrieval"): the candidates whose ranker probability clears the bundle's
  threshold. No model, no text in between.
- `ModelSelector`: a language model, through a runtime (models/runtimes), reads the note and the
  candidates as the contract lays them out and writes the codes it keeps; the contract's parser
  reads them back.

- `VerifierSelector`: a fine-tuned verifier reads the note and every candidate in one forward
  pass and judges each at its decision slot (models/contract.py, "verifier input"); a small
  stacked model turns the ranker's probability and the verifier's margin into the probability.
  Needs a runtime that reads logits in process (llama.cpp, ONNX Runtime, transformers).

Each returns a `Selection`: the chosen codes (`CodedItem`, with the chooser's probability), what
was dropped and why, the raw answer, and the real token counts.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Protocol

from .contract import (
    VERIFIER_CANDIDATES,
    VERIFIER_NO,
    VERIFIER_YES,
    Candidate,
    CodedItem,
    Rejected,
    build_messages,
    build_verifier_input,
    decision_token_ids,
    parse_answer,
    verifier_prompts,
)
from .errors import CoderError
from .retrieve import FEATURES
from .runtimes import ModelRequest, Runtime, Scorer, ScoreRequest, TextDecider, open_runtime


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


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def ranker_logit(candidate: Candidate) -> float:
    """The ranker's probability as a logit (clipped): what the stacker and the residual verifier
    add the verifier's margin to."""
    return _logit(candidate.score)


STACKER_INPUTS = ("ranker_logit", "verifier_margin", "margin_x_ranker") + FEATURES


@dataclass(frozen=True)
class Stacker:
    """P(code belongs to the note) from the ranker's features and logit and the verifier's margin:
    a logistic regression fitted on cases neither the ranker nor the verifier learned from, its
    threshold chosen there. Stored in the coder bundle beside the verifier."""

    inputs: tuple[str, ...]  # names from STACKER_INPUTS
    weights: tuple[float, ...]
    bias: float
    threshold: float

    @staticmethod
    def row(candidate: Candidate, margin: float) -> dict[str, float]:
        ranker = ranker_logit(candidate)
        return {"ranker_logit": ranker, "verifier_margin": margin, "margin_x_ranker": margin * ranker,
                **dict(zip(FEATURES, candidate.features))}

    def probability(self, candidate: Candidate, margin: float) -> float:
        row = self.row(candidate, margin)
        z = sum(w * row.get(name, 0.0) for name, w in zip(self.inputs, self.weights)) + self.bias
        return 1.0 / (1.0 + math.exp(-max(min(z, 40.0), -40.0)))

    def to_dict(self) -> dict:
        return {"inputs": list(self.inputs), "weights": list(self.weights), "bias": self.bias,
                "threshold": self.threshold}

    @classmethod
    def from_dict(cls, d: dict) -> "Stacker":
        unknown = set(d["inputs"]) - set(STACKER_INPUTS)
        if unknown:
            raise ValueError(f"stacker inputs {sorted(unknown)} are not computed by this version")
        return cls(tuple(d["inputs"]), tuple(float(w) for w in d["weights"]), float(d["bias"]),
                   float(d["threshold"]))

    @classmethod
    def verifier_alone(cls, threshold: float = 0.5) -> "Stacker":
        """The verifier's own P(yes): for checks and for measuring what it adds."""
        return cls(("verifier_margin",), (1.0,), 0.0, threshold)


class NotAScorer(CoderError, RuntimeError):
    """The verifier needs logits at its decision slots, which this runtime does not give."""


class VerifierSelector:
    """The verifier judges every candidate of a chunk in one forward pass; the stacker makes its
    margin and the ranker's probability one probability; those at the stacker's threshold are
    chosen, most probable first."""

    def __init__(self, runtime: Scorer | TextDecider, stacker: Stacker,
                 candidates: int = VERIFIER_CANDIDATES):
        if not hasattr(runtime, "score") and not hasattr(runtime, "decide"):
            raise NotAScorer(f"{runtime.name} gives no log-probabilities, so it cannot run a "
                             "verifier: run the bundle's GGUF in the app (llama.cpp), or serve it "
                             "with llama.cpp's server (`python -m models.runtimes.llamacpp_server`).")
        self.runtime = runtime
        self.name = f"verifier:{runtime.name}"
        self.stacker = stacker
        self.k = candidates
        # In process: token ids and logits at the slots. A server: one decision token per
        # candidate, its top log-probabilities read (the prompt prefix is cached there).
        self.in_process = hasattr(runtime, "score")
        self.choices = decision_token_ids(runtime.tokenize) if self.in_process else None

    def judge(self, text: str, candidates: list[Candidate],
              cancel: threading.Event | None = None) -> tuple[list[tuple[Candidate, float, float]], int]:
        """(candidate, verifier margin, stacked probability) for each candidate, and tokens read."""
        if self.in_process:
            inp = build_verifier_input(text, candidates, self.runtime.tokenize, max_candidates=self.k)
            listed = inp.candidates
            scores = self.runtime.score(ScoreRequest(inp.ids, inp.slots, self.choices, cancel))
        else:
            listed, prompts = verifier_prompts(text, candidates, self.k)
            scores = self.runtime.decide(prompts, (VERIFIER_YES, VERIFIER_NO), cancel)
        return [(c, m, self.stacker.probability(c, m))
                for c, m in zip(listed, scores.margins)], scores.prompt_tokens

    def select(self, text: str, candidates: list[Candidate], cancel: threading.Event | None = None,
               threshold: float = 0.5) -> Selection:
        judged, tokens = self.judge(text, candidates, cancel)
        chosen = sorted((CodedItem(c.code, "", round(p, 4)) for c, _, p in judged
                         if p >= self.stacker.threshold), key=lambda i: -i.probability)
        answer = " ".join(f"{c.code}:{m:+.2f}" for c, m, _ in judged)  # margins, for the audit
        return Selection(chosen, [], answer, tokens, 0)

    def close(self) -> None:
        self.runtime.close()


def open_selector(spec: str, candidates: int = 20, use_candidates: bool = True,
                  max_tokens: int = 384, stacker: Stacker | None = None, **runtime_options) -> Selector:
    """`retrieval` for the ranker alone; anything else is a model (`open_runtime`'s specs): a
    verifier when a `stacker` comes with it (from its bundle), else a generative model."""
    if spec == "retrieval":
        return ThresholdSelector()
    if stacker is not None:
        return VerifierSelector(open_runtime(spec, **runtime_options), stacker)
    return ModelSelector(open_runtime(spec, **runtime_options), candidates, use_candidates, max_tokens)
