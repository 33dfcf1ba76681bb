"""The suggestion pipeline, as plain steps, each owned once:

    check (models/notes.py) -> chunk -> retrieve (models/retrieve.py) -> select (models/select.py:
    the ranker's threshold, the verifier judging every candidate, or a generative model) ->
    validate (the code set) -> evidence (models/evidence.py) -> coding rules (models/rules.py)
    -> suggestions, those with evidence in the note first

The builder's evaluation, the REST server and the desktop app all call `Pipeline.suggest`;
nothing else builds prompts or reads answers. Whatever a model writes, only codes of the FY2026
code set come out; everything else is reported in `rejected` with the reason.

Confidence, set in `confidence` only: the selector's probability for the code (the ranker's own
for retrieval alone; the stacked probability of ranker and verifier for the verifier; 0.5 + half
the ranker's for a code a generative model wrote), halved when no evidence for the code is found
in the note.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache, partial
from typing import Callable

from . import codeset as codeset_mod
from . import rules
from .codeset import CodeSet
from .contract import Candidate, CodedItem, Rejected, build_messages
from .evidence import best_clause, denied, narrow, overlap, stated_sentence, supports
from .notes import check_note, encounter_note
from .retrieve import Retriever, default_retriever
from .runtimes import Cancelled, Runtime
from .select import ModelSelector, Selector, ThresholdSelector, VerifierSelector, open_selector
from .text import family_history_statements, locate, reports_family_history, without_family_history

__all__ = ["Cancelled", "Evidence", "Flag", "Pipeline", "Rejected", "Suggestion", "SuggestionResult",
           "chunk_note", "confidence"]


class Flag(StrEnum):
    """A suggestion's flags (and the rejection reasons NOT_IN_CODESET, NEGATED, FAMILY_HISTORY). A
    str: members compare, hash, join and serialize (json, pydantic) as their plain values, and str()
    is the value."""

    NOT_IN_CODESET = "not_in_codeset"
    NOT_BILLABLE = "not_billable"
    MORE_SPECIFIC = "more_specific_available"
    EXCLUDES1 = "excludes1_conflict"
    # A generic code ("unspecified", "without complications") beside a suggested code of the same
    # condition that says more, which was the less sure of the two (models/rules.py): one is wrong.
    SPECIFIC_SUGGESTED = "more_specific_suggested"
    # Added by the coding rules: one code that ICD-10-CM has for two suggested conditions (I12.9
    # for I10 and N18.4), replacing the one it reports (models/rules.py).
    COMBINATION = "combination"
    # Came in because the note's assessment states it in the code set's words: a code the
    # selector left out, or the specific code in place of its "unspecified" one (models/rules.py).
    STATED = "stated_in_assessment"
    # Added by the coding rules: a code that a suggested code's "Use additional code" note asks
    # for: a drug therapy (Z79.4 insulin for E11.65) where the note names a current drug of its
    # class, or the BMI (Z68.37 for E66.812) where the note records it.
    ADDITIONAL = "additional_code"
    # Added by the coding rules: the long-term use of an anticoagulant, antiplatelet or aspirin
    # that the note states ("Continue apixaban long term"), whether or not a code asks for it.
    LONG_TERM = "long_term_drug_stated"
    # Added by the coding rules: what the visit was for, where the note says so: Z23 for a vaccine
    # given, Z00.- for a routine examination ("Well-child visit"), Z34.-/Z3A.- for a normal
    # pregnancy's prenatal visit.
    ENCOUNTER = "encounter_reason"
    # Added by the coding rules: a personal or social history the note records outside the
    # assessment (Z87.891 for "Former smoker, quit 15 years ago", F17.210 for "Smokes half a pack
    # a day").
    HISTORY = "history_stated"
    UNSUPPORTED = "unsupported"
    NEGATED = "negated"  # a rejection: the note names the condition only to deny it
    # A rejection: the note names the condition only as a relative's ("father with colon cancer");
    # the family-history codes (Z80-Z84, "Family history of ...") report that.
    FAMILY_HISTORY = "family_history"


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
    more_specific: list[str] = field(default_factory=list)  # SPECIFIC_SUGGESTED: those codes
    combines: list[str] = field(default_factory=list)  # COMBINATION: the codes it stands for
    asked_by: list[str] = field(default_factory=list)  # ADDITIONAL: the codes whose notes ask for it

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["evidence"] = dict(self.evidence.__dict__) if self.evidence else None
        return d


@dataclass
class SuggestionResult:
    suggestions: list[Suggestion]
    rejected: list[Rejected]
    candidates: list[Candidate]
    warnings: list[str]
    raw_answers: list[str]
    runtime: str  # the selector: "retrieval", or the model's runtime and file
    edition: str
    seconds: float
    prompt_tokens: int = 0  # as the runtime counts them (0 for retrieval)
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


def confidence(probability: float, supported: bool) -> float:
    """The confidence shown for a suggestion: the selector's probability, halved without evidence."""
    return round(probability if supported else probability / 2, 4)


def open_bundle_selector(bundle, spec: str, served_verifier: bool = False, **options) -> Selector:
    """`open_selector` for `spec` with the stacker `bundle` holds for it (none without a bundle).
    A server says which model it serves only once asked, so a served verifier's stacker is
    chosen again then (`Bundle.stacker`'s `served_model`: llama.cpp's server names the GGUF)."""
    selector = open_selector(spec, stacker=bundle.stacker(spec, served_verifier) if bundle else None,
                             **options)
    if bundle is not None and served_verifier and isinstance(selector, VerifierSelector):
        selector.stacker = bundle.stacker(spec, True, getattr(selector.runtime, "model", ""))
    return selector


class Pipeline:
    def __init__(self, selector: Selector | Runtime, cs: CodeSet | None = None,
                 retriever: Retriever | None = None, candidates: int = 20, pool: int = 50,
                 use_candidates: bool = True, max_tokens: int = 384, coding_rules: bool = True):
        """`selector`: a Selector, or a model Runtime (wrapped in a ModelSelector showing it
        `candidates` codes, or none without `use_candidates`, and letting it write
        `max_tokens`). `pool`: candidates retrieved per chunk. `coding_rules`: apply
        models/rules.py (US coding: no integral symptoms, no generic code beside a specific one);
        off, every supported mention is coded (how CodiEsp was annotated)."""
        if not isinstance(selector, (ThresholdSelector, ModelSelector, VerifierSelector)):
            selector = ModelSelector(selector, candidates, use_candidates, max_tokens)
        self.selector = selector
        self.cs = cs or codeset_mod.load()
        self.retriever = retriever or default_retriever(self.cs)
        self.pool = max(pool, candidates)
        self.coding_rules = coding_rules

    @classmethod
    def from_bundle(cls, bundle, model: str | None = None, cs: CodeSet | None = None,
                    runtime_options: dict | None = None, **options) -> "Pipeline":
        """A pipeline over a coder bundle: its retriever, and its default model (or `model`,
        see `Bundle.runtime_spec`; "retrieval" for the ranker alone). `served_verifier`: a
        server `model` serves this bundle's verifier (its server mode), not a generative model."""
        cs = cs or codeset_mod.load()
        retriever = bundle.load_retriever(cs)
        spec = bundle.runtime_spec(model, with_torch=True)  # the merged model on AMX, where torch is
        selector = open_bundle_selector(bundle, spec, options.get("served_verifier", False), **{
            k: v for k, v in options.items() if k in ("candidates", "use_candidates", "max_tokens")},
            **(runtime_options or {}))
        return cls(selector, cs, retriever, pool=options.get("pool", 50),
                   coding_rules=options.get("coding_rules", True))

    def prompt_messages(self, text: str, candidates: list[Candidate] | None = None) -> list[dict]:
        """The chat messages a model reads for one chunk of text (for checks and exports)."""
        if candidates is None:
            candidates = self.retrieve(text)
        if isinstance(self.selector, ModelSelector):
            return self.selector.messages(text, candidates)
        return build_messages(text, candidates[:20])

    # --- the steps ---------------------------------------------------------------------
    def retrieve(self, text: str) -> list[Candidate]:
        return self.retriever.retrieve(text, k=self.pool)

    def suggest(self, note: str, cancel: threading.Event | None = None,
                progress: Callable[[int, int], None] | None = None) -> SuggestionResult:
        started = time.perf_counter()
        checked = check_note(note)  # raises NoteError with advice for unusable notes
        chunks = chunk_note(note)
        candidates: dict[str, Candidate] = {}  # best of each code over the chunks, note offsets
        chosen: dict[str, CodedItem] = {}
        rejected: list[Rejected] = []
        answers: list[str] = []
        tokens = [0, 0]
        for n, (offset, text) in enumerate(chunks):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            local = self.retrieve(text)
            for c in local:
                c = c.shifted(offset)
                if c.code not in candidates or c.score > candidates[c.code].score:
                    candidates[c.code] = c
            selection = self.selector.select(text, local, cancel, threshold=self.retriever.threshold)
            answers.append(selection.raw_answer)
            rejected += selection.rejected
            tokens[0] += selection.prompt_tokens
            tokens[1] += selection.completion_tokens
            for item in selection.chosen:
                if item.code not in chosen or item.probability > chosen[item.code].probability:
                    chosen[item.code] = item
            if progress:
                progress(n + 1, len(chunks))
        suggestions = []
        for item in chosen.values():
            if not self.cs.is_valid(item.code):
                rejected.append(Rejected(item.code, Flag.NOT_IN_CODESET))
                continue
            suggestion = self.validate(note, item, candidates.get(item.code))
            if Flag.UNSUPPORTED in suggestion.flags and denied(
                    note, [suggestion.description, *rules.wordings(self.cs, item.code)]):
                # Similar cases or phrases proposed it, but this note denies it: never suggested.
                rejected.append(Rejected(item.code, Flag.NEGATED))
                continue
            if self._about_a_relative(note, suggestion):
                span = self.evidence(without_family_history(note), suggestion.description,
                                     rules.wordings(self.cs, item.code), "", candidates.get(item.code))
                if span is None:  # only a relative has it: a "Family history of" code reports that
                    rejected.append(Rejected(item.code, Flag.FAMILY_HISTORY))
                    continue
                suggestion.evidence = Evidence(span[0], span[1], note[span[0]:span[1]])  # the patient's words
            suggestions.append(suggestion)
        if self.coding_rules:
            suggestions, dropped = self.apply_rules(note, suggestions, candidates)
            rejected += dropped
        self._flag_excludes1(suggestions)
        # Codes whose words were not found in the note come last, below the supported ones.
        suggestions.sort(key=lambda s: (Flag.UNSUPPORTED in s.flags, -s.confidence))
        return SuggestionResult(
            suggestions=suggestions, rejected=rejected,
            candidates=sorted(candidates.values(), key=lambda c: -c.score)[: self.pool],
            warnings=checked.warnings, raw_answers=answers, runtime=self.selector.name,
            edition=self.cs.edition, seconds=round(time.perf_counter() - started, 3),
            prompt_tokens=tokens[0], completion_tokens=tokens[1])

    def apply_rules(self, note: str, suggestions: list[Suggestion],
                    candidates: dict[str, Candidate]) -> tuple[list[Suggestion], list[Rejected]]:
        """models/rules.py on the suggestions: in a note whose assessment is not a hospital's
        discharge diagnoses, a diagnosis the note only calls "probable", "suspected", "rule out"
        ... goes, and the rules below read the note
        without those words (`rules.certain_part`); codes for a side the note does not name go, a
        code "with complications" where the note says "without" goes, an "unspecified" code
        gives way to the specific one the assessment states, a retrieved code the assessment
        states in the code set's words comes in, then a code the note does not state beside an
        alternative the assessment states goes, and so do a code another stated title reports
        and the symptoms and family history the assessment leaves out, then what
        `rules.apply` drops goes, what it adds comes in (with the evidence of the codes it
        combines where its own words are not in the note), and the generic codes it keeps beside
        a less sure specific one are flagged. Last come the drug therapy codes the kept codes
        ask for (Z79.84 for E11.65 where the note names metformin; Z68.37 for E66.812 where it
        records "BMI 37.4"; L97.412 for E11.621 where the assessment says "right heel with fat
        layer exposed"), the drugs the note says the patient takes long term (Z79.01 for
        "Continue apixaban long term"), the family or personal history the assessment states
        (Z80.0 for "Family history of colon cancer") and the tobacco use the note records (F17.210
        for "Smokes half a pack a day"), what the note records as their evidence;
        a malignancy whose personal history code is among them (Z85.828 beside C44.311) goes.
        In an office, clinic or ED note (`notes.encounter_note`), a code with no evidence goes,
        a selected one before the rules read it."""
        certain = rules.certain_part(note)  # the rules read what the note says with certainty
        dropped = [Rejected(s.code, rules.UNCERTAIN) for s in suggestions
                   if certain != note and self._only_supposed(certain, s, candidates.get(s.code))]
        if encounter_note(note):
            # A guess with no evidence goes first (see the end): it must not take a symptom
            # away as integral to it (R73.03 prediabetes beside a guessed E11.9), nor combine.
            dropped += [Rejected(s.code, rules.NO_EVIDENCE) for s in suggestions
                        if Flag.UNSUPPORTED in s.flags]
        suggestions = [s for s in suggestions if s.code not in {r.raw for r in dropped}]
        dropped += rules.wrong_side(self.cs, certain, [s.code for s in suggestions])
        dropped += rules.contradicted(self.cs, certain, [s.code for s in suggestions
                                                      if s.code not in {r.raw for r in dropped}])
        gone = {r.raw for r in dropped}
        suggestions = [s for s in suggestions if s.code not in gone]
        stated = rules.specific_in_assessment(self.cs, certain, [s.code for s in suggestions])
        present = {s.code: s for s in suggestions}
        replaced = []
        for s in suggestions:
            if s.code in stated:
                dropped.append(Rejected(s.code, rules.LESS_SPECIFIC))
                if (kept := present.get(stated[s.code])) is not None:
                    # Already suggested beside it: the assessment settles which; the surer confidence.
                    kept.confidence = max(kept.confidence, s.confidence)
                    if Flag.STATED not in kept.flags:
                        kept.flags.append(Flag.STATED)
                    continue
                if any(x.code == stated[s.code] for x in replaced):
                    continue
                s = self.validate(note, CodedItem(stated[s.code], probability=s.confidence),
                                  candidates.get(stated[s.code]))
                s.flags.append(Flag.STATED)
            replaced.append(s)
        pool = [c.code for c in sorted(candidates.values(), key=lambda c: -c.score)[: self.pool]]
        for code in rules.stated_in_assessment(self.cs, certain, rules.with_siblings(self.cs, pool),
                                               [s.code for s in replaced]):
            # The assessment says it in the code set's words: as sure as such codes prove to be.
            found = candidates.get(code)
            probability = max(found.score if found else 0.0, self._stated_confidence())
            s = self.validate(note, CodedItem(code, probability=probability), found)
            s.flags.append(Flag.STATED)
            replaced.append(s)
        # After the codes the assessment states came in: they are its diagnoses too.
        gone = rules.alternative_stated(self.cs, certain, [s.code for s in replaced])
        gone += rules.reported_by_stated(self.cs, certain, [s.code for s in replaced
                                                           if s.code not in {r.raw for r in gone}])
        gone += rules.unassessed(self.cs, certain, [s.code for s in replaced])
        dropped += gone
        suggestions = [s for s in replaced if s.code not in {r.raw for r in gone}]
        # The sentence naming two codes: whether they combine (rules.apply), then the evidence.
        naming_both = lru_cache(maxsize=None)(partial(rules.sentence_naming_both, self.cs, certain))
        applied = rules.apply([(s.code, s.confidence) for s in suggestions], self.cs,
                              rules.established_in_assessment(self.cs, certain, [s.code for s in suggestions]),
                              lambda a, b: naming_both(a, b) is not None,
                              frozenset(s.code for s in suggestions if Flag.STATED in s.flags))
        by_code = {s.code: s for s in suggestions}
        out = []
        for code, probability in applied.kept:
            s = by_code.get(code)
            if s is None:  # a combination code
                sources = [by_code[c] for c in applied.combined[code]]
                s = self.validate(note, CodedItem(code, probability=probability), candidates.get(code))
                support = next((x.evidence for x in sources if x.evidence), None)
                if len(sources) == 2 and (both := naming_both(*applied.combined[code])):
                    # The sentence that names the two ("Coronary artery disease with stable angina").
                    s.evidence, s.flags = Evidence(both[0], both[1], note[both[0]:both[1]]), [
                        f for f in s.flags if f != Flag.UNSUPPORTED]
                elif s.evidence is None and support is not None:
                    s.evidence, s.flags = support, [f for f in s.flags if f != Flag.UNSUPPORTED]
                # The codes it combines chose its child (I12.9 for stage 4): "unspecified" in
                # its title ("... or unspecified chronic kidney disease") is not a gap to fill.
                s.flags = [f for f in s.flags if f != Flag.MORE_SPECIFIC] + [Flag.COMBINATION]
                s.confidence = probability
                s.combines = list(applied.combined[code])
            if code in applied.outranked:
                s.flags.append(Flag.SPECIFIC_SUGGESTED)
                s.more_specific = applied.outranked[code]
            out.append(s)
        kept = [s.code for s in out]
        asked = (rules.drug_therapy(self.cs, certain, kept) | rules.body_mass_index(self.cs, certain, kept)
                 | rules.status_asked(self.cs, certain, kept))
        # A range's detail is said in an assessment sentence: its evidence, the words of its title
        # there ("ulcer of the right heel with fat layer exposed"), not the whole sentence.
        asked |= {code: (narrow(note, span, [self.cs.description(code)]), asking)
                  for code, (span, asking) in rules.detail_asked(self.cs, certain, kept).items()}
        for code, (span, asking) in asked.items():
            # As sure as the surest code asking for it.
            probability = max(x.confidence for x in out if x.code in asking)
            s = self._recorded(note, code, span, probability, candidates.get(code), Flag.ADDITIONAL)
            s.asked_by = asking
            out.append(s)
        for rule, flag in ((rules.long_term_therapy, Flag.LONG_TERM), (rules.history_of, Flag.STATED),
                           (rules.tobacco_history, Flag.HISTORY), (rules.current_smoking, Flag.HISTORY),
                           (rules.immunization, Flag.ENCOUNTER),
                           (rules.routine_examination, Flag.ENCOUNTER), (rules.prenatal_visit, Flag.ENCOUNTER)):
            for code, span in rule(self.cs, certain, [s.code for s in out]).items():
                # The note says so, as for a code the assessment states in the code set's words.
                candidate = candidates.get(code)
                probability = max(candidate.score if candidate else 0.0, self._stated_confidence())
                out.append(self._recorded(note, code, span, probability, candidate, flag))
        past = rules.in_personal_history(self.cs, [s.code for s in out])
        dropped += past
        out = [s for s in out if s.code not in {r.raw for r in past}]
        if encounter_note(note):
            # An office, clinic or ED note's assessment names what the visit is coded for in its
            # own words: a code whose words the note never says is a guess of similar cases.
            # (Case reports are translated and summarized: there a code without literal evidence
            # is often right, so it stays, listed below the supported ones.)
            dropped += [Rejected(s.code, rules.NO_EVIDENCE) for s in out if Flag.UNSUPPORTED in s.flags]
            out = [s for s in out if Flag.UNSUPPORTED not in s.flags]
        return out, dropped + applied.dropped

    def _stated_confidence(self) -> float:
        """The confidence of a code the note states in words: how often such codes were right
        on the train notes, out of fold (`Retriever.stated_precision`), and never below the
        threshold a code needs."""
        return max(self.retriever.threshold, self.retriever.stated_precision or 0.0)

    def _recorded(self, note: str, code: str, span: tuple[int, int], probability: float,
                  candidate: Candidate | None, flag: Flag) -> Suggestion:
        """A code a coding rule adds for what the note records (a drug's name, a BMI): those
        words are its evidence, and `flag` says why it came."""
        s = self.validate(note, CodedItem(code, probability=probability), candidate)
        s.evidence = Evidence(span[0], span[1], note[span[0]:span[1]])
        s.flags = [f for f in s.flags if f != Flag.UNSUPPORTED] + [flag]
        s.confidence = probability
        return s

    def _only_supposed(self, certain: str, s: Suggestion, candidate: Candidate | None) -> bool:
        """Is `s` a diagnosis with evidence in the note but none in its `certain` part, that is,
        one the note only calls "probable", "suspected", "rule out" ...?"""
        return s.evidence is not None and rules.is_diagnosis(self.cs, s.code) and self.evidence(
            certain, s.description, rules.wordings(self.cs, s.code), "", candidate) is None

    def validate(self, note: str, item: CodedItem, candidate: Candidate | None) -> Suggestion:
        """Flags from the code set, then the evidence, then the confidence."""
        cs = self.cs
        code = item.code
        s = Suggestion(code, cs.description(code), 0.0, None)
        if not cs.is_billable(code):
            s.flags.append(Flag.NOT_BILLABLE)
            # The broadest choices first (E11.9 before E11.3211).
            s.billable_children = sorted(cs.billable_descendants(code), key=len)[:12]
        elif "unspecified" in s.description.lower():
            parent = next(iter(cs.ancestors(code)), None)  # a category, never a block
            if parent and len(cs.billable_descendants(parent)) > 1:
                s.flags.append(Flag.MORE_SPECIFIC)
        span = self.evidence(note, s.description, rules.wordings(cs, code), item.evidence, candidate)
        if span is None:
            s.flags.append(Flag.UNSUPPORTED)
        else:
            s.evidence = Evidence(span[0], span[1], note[span[0]:span[1]])
        s.confidence = confidence(item.probability, span is not None)
        return s

    @staticmethod
    def _about_a_relative(note: str, s: Suggestion) -> bool:
        """Is the suggestion's evidence a statement about a relative's health ("father with colon
        cancer")? A coder codes the patient's conditions; a relative's is reported by a "Family
        history of" code (Z80-Z84), which such a statement does support."""
        return (s.evidence is not None and not reports_family_history(s.description)
                and any(a <= s.evidence.start < b for a, b in family_history_statements(note)))

    @staticmethod
    def evidence(note: str, description: str, inclusion_terms: list[str], quote: str,
                 candidate: Candidate | None) -> tuple[int, int] | None:
        """Where the note supports the code: the chooser's quote if it is about this code, else
        the span retrieval matched, else the clause that says it, else the sentence that holds
        all its words; None when nothing does."""
        wordings = [description, *inclusion_terms]
        span = locate(note, quote)
        if span is not None and not supports(note[span[0]:span[1]], wordings):
            span = None  # a real quote, but about another condition
        if span is None and candidate is not None and candidate.end and max(
                overlap(note[candidate.start:candidate.end], w) for w in wordings) >= 0.6:
            span = narrow(note, (candidate.start, candidate.end), wordings)
        if span is None:
            span = best_clause(note, description, min_overlap=0.6) or stated_sentence(note, wordings)
            span = span and narrow(note, span, wordings)
        return span

    def _flag_excludes1(self, suggestions: list[Suggestion]) -> None:
        for i, a in enumerate(suggestions):
            for b in suggestions[i + 1:]:
                if self.cs.excludes1_conflict(a.code, b.code):
                    for x, y in ((a, b), (b, a)):
                        x.conflicts_with.append(y.code)
                        if Flag.EXCLUDES1 not in x.flags:
                            x.flags.append(Flag.EXCLUDES1)
