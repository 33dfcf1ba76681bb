"""The prompt contract: how a note becomes chat messages, and how an answer is read back.

Training examples and inference prompts are both built here, so they cannot drift apart.
The answer is JSON: {"codes": ["E11.22", "I10"]}. Codes only: every answer token costs ~20 ms on
a laptop CPU, and the pipeline finds the supporting words in the note itself (models/evidence.py).
Answers of builds before that ({"codes": [{"code": ..., "evidence": ...}]}) still parse.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

from .codeset import InvalidCodeFormat, normalize

# What a model trained on this contract expects to read and write. A coder bundle records the
# version it was built for, and one of another version is refused, never mis-scored.
# 1: answers quoting evidence; 2: codes-only answers. The verifier's input has its own version
# (VERIFIER_CONTRACT), recorded beside its model in the bundle.
CONTRACT_VERSION = 2
MAX_CODES = 30
MAX_EVIDENCE_CHARS = 160

SYSTEM_PROMPT = (
    "You are an expert medical coder. Read the clinical note and list the ICD-10-CM FY2026 "
    "diagnosis codes it supports, most important first. Code only conditions the note states "
    "as present; never code what is denied, ruled out or only in the family history. "
    "Answer with JSON only."
)


@dataclass(frozen=True)
class Candidate:
    """A code on its way from retrieval to the model: the official description, the ranker's
    probability that it belongs to the note, and the span of the note that matched it best
    ((0, 0) when only similar cases or priors proposed it)."""

    code: str
    description: str
    score: float = 0.0
    start: int = 0
    end: int = 0
    features: tuple[float, ...] = ()  # the ranker's inputs (models.retrieve.FEATURES), if any

    def shifted(self, offset: int) -> "Candidate":
        """The same candidate with its span moved by `offset` (chunk <-> whole note)."""
        return replace(self, start=self.start + offset, end=self.end + offset) if self.end else self


@dataclass(frozen=True)
class CodedItem:
    """A code someone chose (a model, or the ranker's threshold), the words quoted for it, and
    how sure the chooser is (a probability; the pipeline turns it into the confidence shown)."""

    code: str
    evidence: str = ""
    probability: float = 1.0


@dataclass(frozen=True)
class Rejected:
    """What did not become a suggestion, and why: bad_format | duplicate | no_code | too_many
    (the parser), not_in_codeset (validation), negated (the note denies it), the coding rules'
    reasons (models/rules.py)."""

    raw: str
    reason: str


@dataclass
class ParsedAnswer:
    items: list[CodedItem] = field(default_factory=list)
    dropped: list[Rejected] = field(default_factory=list)
    mode: str = "empty"  # json | repaired | salvaged | empty

    @property
    def codes(self) -> list[str]:
        return [i.code for i in self.items]


# --- prompt ------------------------------------------------------------------------------
def user_message(note: str, candidates: Sequence[Candidate] | None = None) -> str:
    parts = ["Clinical note:", "<<<", note.strip(), ">>>"]
    if candidates:
        parts += ["", "Candidate codes (prefer these; each is valid in FY2026):"]
        parts += [f"{c.code} {c.description}" for c in candidates]
    parts += ["", 'Answer as {"codes": ["...", "..."]}.']
    return "\n".join(parts)


def build_messages(note: str, candidates: Sequence[Candidate] | None = None) -> list[dict]:
    """Chat messages (system + user) for a note; the model's reply completes them."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_message(note, candidates)},
    ]


def note_from_messages(messages: list[dict]) -> str:
    """The note inside messages built by `build_messages` (e.g. a stored training example)."""
    content = messages[-1]["content"]
    return content.split("<<<\n", 1)[1].rsplit("\n>>>", 1)[0]


def format_answer(items: Iterable[CodedItem | str]) -> str:
    """The exact answer text the model is trained to write (evidence is not part of it)."""
    codes = [i.code if isinstance(i, CodedItem) else i for i in items]
    return json.dumps({"codes": codes[:MAX_CODES]}, separators=(", ", ": "))


def training_example(note: str, items: Sequence[CodedItem],
                     candidates: Sequence[Candidate] | None = None) -> dict:
    """A prompt-completion conversational example (completion-only loss in trl)."""
    return {
        "prompt": build_messages(note, candidates),
        "completion": [{"role": "assistant", "content": format_answer(items)}],
    }


# --- constraint --------------------------------------------------------------------------
# [.], not \.: llama.cpp turned that escape into invalid GBNF and crashed.
CODE_PATTERN = "^[A-Z][0-9][0-9A-Z]([.][0-9A-Z]{1,4})?$"

ANSWER_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "codes": {
            "type": "array",
            "maxItems": MAX_CODES,
            "items": {"type": "string", "pattern": CODE_PATTERN},
        }
    },
    "required": ["codes"],
    "additionalProperties": False,
}

# Hand-written GBNF for llama.cpp: the same language as ANSWER_SCHEMA, bounded so decoding ends.
GBNF = rf"""
root     ::= "{{" ws "\"codes\"" ws ":" ws "[" ws items? ws "]" ws "}}"
items    ::= item (ws "," ws item){{0,{MAX_CODES - 1}}}
item     ::= "\"" code "\""
code     ::= [A-Z] [0-9] [0-9A-Z] ("." [0-9A-Z]{{1,4}})?
ws       ::= [ \t\n]{{0,2}}
""".strip() + "\n"


# --- parse -------------------------------------------------------------------------------
_CODE_IN_TEXT = re.compile(r"\b[A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?\b")
_ITEM_IN_TEXT = re.compile(
    r'\{\s*"code"\s*:\s*"(?P<code>[^"]{0,20})"\s*(?:,\s*"evidence"\s*:\s*"(?P<ev>(?:[^"\\]|\\.)*)"?)?')
_QUOTED_CODE = re.compile(r'"([A-Za-z][0-9][0-9A-Za-z](?:\.[0-9A-Za-z]{1,4})?)"')
_CODE_KEYS = ("code", "icd10", "icd_10", "icd10_code", "icd")


def parse_answer(text: str) -> ParsedAnswer:
    """Read a model's answer. Never raises; reports every item it dropped and why."""
    try:
        return _parse(text if isinstance(text, str) else str(text))
    except Exception as exc:  # noqa: BLE001 - model output must never crash the caller
        return ParsedAnswer(dropped=[Rejected(str(text)[:200], f"unparseable: {exc}")])


def _parse(text: str) -> ParsedAnswer:
    stripped = re.sub(r"^```(?:json)?|```$", "", text.strip(), flags=re.M).strip()
    data = _loads(stripped)
    if data is None and "{" in stripped:
        data = _loads(stripped[stripped.find("{"): stripped.rfind("}") + 1])
    if data is not None:
        raw_items = data.get("codes", []) if isinstance(data, dict) else data
        if isinstance(raw_items, list):
            return _collect(raw_items, "json")
    matches = list(_ITEM_IN_TEXT.finditer(stripped))
    if matches:  # JSON cut short (token limit) or slightly malformed
        raw = [{"code": m.group("code"), "evidence": _unescape(m.group("ev") or "")} for m in matches]
        return _collect(raw, "repaired")
    if '"codes"' in stripped:  # a list of codes cut short: keep only the codes that were closed
        quoted = _QUOTED_CODE.findall(stripped.split('"codes"', 1)[1])
        if quoted:
            return _collect(quoted, "repaired")
    codes = _CODE_IN_TEXT.findall(stripped)
    return _collect(codes, "salvaged" if codes else "empty")


def _loads(text: str):
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _unescape(s: str) -> str:
    try:
        return json.loads(f'"{s}"')
    except ValueError:
        return s


def _collect(raw_items: list, mode: str) -> ParsedAnswer:
    out = ParsedAnswer(mode=mode)
    seen: set[str] = set()
    for raw in raw_items:
        if isinstance(raw, dict):
            code = next((raw[k] for k in _CODE_KEYS if isinstance(raw.get(k), str)), None)
            evidence = raw.get("evidence")
            evidence = evidence if isinstance(evidence, str) else ""
        elif isinstance(raw, str):
            code, evidence = raw, ""
        else:
            code, evidence = None, ""
        if code is None:
            out.dropped.append(Rejected(json.dumps(raw, ensure_ascii=False)[:200], "no_code"))
            continue
        try:
            norm = normalize(code)
        except InvalidCodeFormat:
            out.dropped.append(Rejected(code[:200], "bad_format"))
            continue
        if norm in seen:
            out.dropped.append(Rejected(code, "duplicate"))
            continue
        if len(out.items) >= MAX_CODES:
            out.dropped.append(Rejected(code, "too_many"))
            continue
        seen.add(norm)
        out.items.append(CodedItem(norm, evidence.strip()[:MAX_EVIDENCE_CHARS]))
    if not out.items and mode != "json":
        out.mode = "empty" if not out.dropped else mode
    return out


# --- verifier input ----------------------------------------------------------------------
# The verifier reads the note, then every candidate on its own line, and decides each one at
# that line's last token: P(" yes") against P(" no") in the next-token logits there. One forward
# pass scores every candidate of a note. Candidates are listed by code, an order that carries no
# rank: listed in the ranker's order, a model learns the order and adds nothing to the ranker.
# Plain text, no chat template, so any base model and tokenizer read it the same way.
VERIFIER_HEAD = ("Clinical note:\n<<<\n")
VERIFIER_TAIL = ("\n>>>\nFor each ICD-10-CM code below: does the note support it as a condition "
                 "of this patient? Answer yes or no.\n")
VERIFIER_CONTRACT = 1
VERIFIER_YES, VERIFIER_NO = " yes", " no"
VERIFIER_NOTE_TOKENS = 1536  # a longer note is cut (the pipeline's chunks stay within this)
VERIFIER_CANDIDATES = 40


def verifier_line(candidate: Candidate) -> str:
    return f"\n{candidate.code} {candidate.description} ->"


@dataclass(frozen=True)
class VerifierInput:
    """Token ids of one note and its candidates, and where each candidate is decided."""

    ids: list[int]
    slots: list[int]  # position whose next-token logits decide candidates[i]
    candidates: list[Candidate]  # in listed (code) order
    note_tokens_cut: int = 0  # note tokens left out to fit VERIFIER_NOTE_TOKENS


def verifier_prompts(note: str, candidates: Sequence[Candidate],
                     max_candidates: int = VERIFIER_CANDIDATES) -> tuple[list[Candidate], list[str]]:
    """The same input as text, for servers that read text and give log-probabilities only for
    tokens they generate: prompts[i] ends at candidate i's decision slot, so the one token a
    server generates after it is that candidate's decision. Each prompt extends the one before,
    and servers reuse the cached prefix: the note is read once."""
    listed = sorted(candidates[:max_candidates], key=lambda c: c.code)
    text = VERIFIER_HEAD + note.strip() + VERIFIER_TAIL
    prompts = []
    for c in listed:
        text += verifier_line(c)
        prompts.append(text)
    return listed, prompts


def build_verifier_input(note: str, candidates: Sequence[Candidate], tokenize,
                         max_note_tokens: int = VERIFIER_NOTE_TOKENS,
                         max_candidates: int = VERIFIER_CANDIDATES) -> VerifierInput:
    """`tokenize(text, bos)` -> token ids (bos: whether to add what the tokenizer puts first).
    Each piece is tokenized on its own and the ids concatenated, so the slots are exact and the
    same for every runtime whose tokenizer splits the pieces the same way (training included)."""
    listed = sorted(candidates[:max_candidates], key=lambda c: c.code)
    note_ids = tokenize(note.strip(), False)
    cut = max(0, len(note_ids) - max_note_tokens)
    ids = tokenize(VERIFIER_HEAD, True) + note_ids[:max_note_tokens] + tokenize(VERIFIER_TAIL, False)
    slots = []
    for c in listed:
        ids += tokenize(verifier_line(c), False)
        slots.append(len(ids) - 1)
    return VerifierInput(ids, slots, listed, cut)


def decision_token_ids(tokenize) -> tuple[int, int]:
    """The single tokens " yes" and " no" of a tokenizer (refused if either is several)."""
    yes, no = tokenize(VERIFIER_YES, False), tokenize(VERIFIER_NO, False)
    if len(yes) != 1 or len(no) != 1:
        raise ValueError(f"this tokenizer splits {VERIFIER_YES!r}/{VERIFIER_NO!r} into {yes}/{no}: "
                         "the verifier needs each as one token")
    return yes[0], no[0]
