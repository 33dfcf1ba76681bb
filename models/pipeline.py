"""The suggestion pipeline: note -> candidates -> contract -> runtime -> parse -> validate.

The builder's evaluation and the desktop app both call `Pipeline.suggest`; nothing else builds
prompts or reads answers. Whatever the model writes, only codes of the FY2026 code set come out;
everything else is reported in `rejected` with the reason.

Confidence: the retrieval ranker's probability for the code (0 when the code was not a
candidate); a code a model chose counts as half-confirmed (0.5 + half the ranker's probability).
It is halved when no evidence for the code is found in the note.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Callable

from . import codeset as codeset_mod
from .codeset import CodeSet
from .contract import build_messages, parse_answer
from .evidence import best_clause, narrow, overlap, supports
from .text import locate
from .notes import check_note
from .retrieve import RetrievedCode, Retriever, default_retriever
from .runtimes import Cancelled, ModelRequest, Runtime  # noqa: F401 - Cancelled is re-exported


class Flag(StrEnum):
    """A suggestion's flags (and the rejection reason NOT_IN_CODESET). A str: members compare,
    hash, join and serialize (json, pydantic) as their plain values, and str() is the value."""

    NOT_IN_CODESET = "not_in_codeset"
    NOT_BILLABLE = "not_billable"
    MORE_SPECIFIC = "more_specific_available"
    EXCLUDES1 = "excludes1_conflict"
    UNSUPPORTED = "unsupported"


CHUNK_CHARS = 6000  # a chunk of note plus candidates stays well inside a 2k-token window


@dataclass
class Evidence:
    start: int
    end: int
    text: str


@dataclass
class Suggestion:
    code: str
    description: str
    confidence: float
    evidence: Evidence | None
    flags: list[str] = field(default_factory=list)
    billable_children: list[str] = field(default_factory=list)  # offered when not billable
    conflicts_with: list[str] = field(default_factory=list)  # Excludes1 partners

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["evidence"] = dict(self.evidence.__dict__) if self.evidence else None
        return d


@dataclass
class Rejected:
    raw: str
    reason: str


@dataclass
class SuggestionResult:
    suggestions: list[Suggestion]
    rejected: list[Rejected]
    candidates: list[RetrievedCode]
    warnings: list[str]
    raw_answers: list[str]
    runtime: str
    edition: str
    seconds: float
    prompt_tokens: int = 0  # as the runtime reports them (0 for retrieval)
    completion_tokens: int = 0

    @property
    def codes(self) -> list[str]:
        return [s.code for s in self.suggestions]


def chunk_note(note: str, max_chars: int = CHUNK_CHARS) -> list[tuple[int, str]]:
    """(offset, text) pieces of at most max_chars, cut at line or sentence ends when possible."""
    chunks, start = [], 0
    while start < len(note):
        end = min(start + max_chars, len(note))
        if end < len(note):
            cut = max(note.rfind("\n", start, end), note.rfind(". ", start, end))
            end = cut + 1 if cut > start + max_chars // 2 else end
        chunks.append((start, note[start:end]))
        start = end
    return chunks


class Pipeline:
    def __init__(self, runtime: Runtime, cs: CodeSet | None = None, retriever: Retriever | None = None,
                 candidates: int = 20, pool: int = 50, use_candidates: bool = True,
                 max_tokens: int = 384):
        self.runtime = runtime
        self.cs = cs or codeset_mod.load()
        self.retriever = retriever or default_retriever(self.cs)
        self.k = candidates
        self.pool = max(pool, candidates)
        self.use_candidates = use_candidates
        self.max_tokens = max_tokens

    @classmethod
    def from_bundle(cls, bundle, model: str | None = None, cs: CodeSet | None = None,
                    runtime_options: dict | None = None, **options) -> "Pipeline":
        """A pipeline over a coder bundle: its retriever, and its default model (or `model`,
        see `Bundle.runtime_spec`)."""
        from .runtimes import open_runtime  # noqa: PLC0415

        cs = cs or codeset_mod.load()
        retriever = bundle.load_retriever(cs)
        runtime = open_runtime(bundle.runtime_spec(model), **(runtime_options or {}))
        return cls(runtime, cs, retriever, **options)

    def prompt_messages(self, text: str, candidates: list[RetrievedCode] | None = None) -> list[dict]:
        """The chat messages `suggest` sends for one chunk of text (also for checks and exports)."""
        if candidates is None:
            candidates = self.retriever.retrieve(text, k=self.pool)
        shown = candidates[: self.k] if self.use_candidates else []
        return build_messages(text, [c.as_candidate() for c in shown])

    def suggest(self, note: str, cancel: threading.Event | None = None,
                progress: Callable[[int, int], None] | None = None) -> SuggestionResult:
        started = time.perf_counter()
        checked = check_note(note)  # raises NoteError with advice for unusable notes
        chunks = chunk_note(note)
        all_candidates: dict[str, RetrievedCode] = {}
        chosen: dict[str, tuple[str, float]] = {}  # code -> (evidence quote, confidence)
        rejected, answers = [], []
        tokens = {"prompt_tokens": 0, "completion_tokens": 0}
        is_model = self.runtime.name != "retrieval"
        for n, (offset, text) in enumerate(chunks):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            cands = [RetrievedCode(c.code, c.description, c.score, c.start + offset, c.end + offset)
                     if c.end else c for c in self.retriever.retrieve(text, k=self.pool)]
            for c in cands:
                if c.code not in all_candidates or c.score > all_candidates[c.code].score:
                    all_candidates[c.code] = c
            local = [RetrievedCode(c.code, c.description, c.score, c.start - offset, c.end - offset)
                     if c.end else c for c in cands]
            request = ModelRequest(note=text, candidates=local, max_tokens=self.max_tokens,
                                   messages=self.prompt_messages(text, local),
                                   options={"threshold": self.retriever.threshold, "cancel": cancel})
            answer = self.runtime.answer(request)
            answers.append(answer)
            for key in tokens:
                tokens[key] += request.options.get(key) or 0
            parsed = parse_answer(answer)
            rejected += [Rejected(d.raw, d.reason) for d in parsed.dropped]
            for item in parsed.items:
                p = all_candidates[item.code].score if item.code in all_candidates else 0.0
                conf = 0.5 + 0.5 * p if is_model else p
                if item.code not in chosen or conf > chosen[item.code][1]:
                    chosen[item.code] = (item.evidence, conf)
            if progress:
                progress(n + 1, len(chunks))
        suggestions = []
        for code, (quote, conf) in chosen.items():
            if not self.cs.is_valid(code):
                rejected.append(Rejected(code, Flag.NOT_IN_CODESET))
                continue
            suggestions.append(self._validate(note, code, quote, conf, all_candidates.get(code)))
        self._flag_excludes1(suggestions)
        suggestions.sort(key=lambda s: -s.confidence)
        return SuggestionResult(
            suggestions=suggestions, rejected=rejected,
            candidates=sorted(all_candidates.values(), key=lambda c: -c.score)[: self.pool],
            warnings=checked.warnings, raw_answers=answers, runtime=self.runtime.name,
            edition=self.cs.edition, seconds=round(time.perf_counter() - started, 3), **tokens)

    def _validate(self, note: str, code: str, quote: str, conf: float,
                  candidate: RetrievedCode | None) -> Suggestion:
        cs = self.cs
        s = Suggestion(code, cs.description(code), round(conf, 4), None)
        if not cs.is_billable(code):
            s.flags.append(Flag.NOT_BILLABLE)
            # The broadest choices first (E11.9 before E11.3211).
            s.billable_children = sorted(cs.billable_descendants(code), key=len)[:12]
        elif "unspecified" in s.description.lower():
            parent = next(iter(cs.ancestors(code)), None)  # a category, never a block
            if parent and len(cs.billable_descendants(parent)) > 1:
                s.flags.append(Flag.MORE_SPECIFIC)
        span = locate(note, quote)
        wordings = [s.description, *cs.inclusion_terms(code)]
        if span is not None and not supports(note[span[0]:span[1]], wordings):
            span = None  # a real quote, but about another condition
        if span is None and candidate is not None and candidate.end and max(
                overlap(note[candidate.start:candidate.end], w) for w in wordings) >= 0.6:
            span = narrow(note, (candidate.start, candidate.end), wordings)
        if span is None:
            span = best_clause(note, s.description, min_overlap=0.6)
            span = span and narrow(note, span, wordings)
        if span is None:
            s.flags.append(Flag.UNSUPPORTED)
            s.confidence = round(s.confidence / 2, 4)
        else:
            s.evidence = Evidence(span[0], span[1], note[span[0]:span[1]])
        return s

    def _flag_excludes1(self, suggestions: list[Suggestion]) -> None:
        for i, a in enumerate(suggestions):
            for b in suggestions[i + 1:]:
                if self.cs.excludes1_conflict(a.code, b.code):
                    for x, y in ((a, b), (b, a)):
                        x.conflicts_with.append(y.code)
                        if Flag.EXCLUDES1 not in x.flags:
                            x.flags.append(Flag.EXCLUDES1)
