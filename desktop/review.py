"""A coder's review of one note, without Qt: the suggestions, the decision on each code, codes
added by hand, and what leaves the app (clipboard text, CSV, JSON, the audit record)."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from enum import Enum

from models.pipeline import Suggestion, SuggestionResult


class Decision(str, Enum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


@dataclass
class ReviewItem:
    suggestion: Suggestion
    decision: Decision = Decision.PENDING
    added_by_hand: bool = False


@dataclass
class Review:
    note: str
    result: SuggestionResult | None = None
    items: list[ReviewItem] = field(default_factory=list)
    model: str = ""
    started_at: float = field(default_factory=time.time)

    @classmethod
    def from_result(cls, note: str, result: SuggestionResult, model: str) -> "Review":
        return cls(note=note, result=result, model=model,
                   items=[ReviewItem(s) for s in result.suggestions])

    def decide(self, row: int, decision: Decision) -> None:
        self.items[row].decision = decision

    def add_code(self, code: str, description: str) -> int:
        """Add a code by hand (accepted); returns its row. An existing code is just accepted."""
        for row, item in enumerate(self.items):
            if item.suggestion.code == code:
                item.decision = Decision.ACCEPTED
                return row
        self.items.append(ReviewItem(Suggestion(code, description, 1.0, None), Decision.ACCEPTED,
                                     added_by_hand=True))
        return len(self.items) - 1

    @property
    def accepted(self) -> list[ReviewItem]:
        return [i for i in self.items if i.decision is Decision.ACCEPTED]

    def clipboard_text(self) -> str:
        """One code per line with its description: pastes cleanly into billing software."""
        return "\n".join(f"{i.suggestion.code}\t{i.suggestion.description}" for i in self.accepted)

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["code", "description", "decision", "confidence", "evidence", "flags",
                         "added_by_hand"])
        for i in self.items:
            s = i.suggestion
            writer.writerow([s.code, s.description, i.decision.value, f"{s.confidence:.3f}",
                             s.evidence.text if s.evidence else "", ";".join(s.flags),
                             "yes" if i.added_by_hand else "no"])
        return buf.getvalue()

    def to_json(self) -> str:
        return json.dumps({
            "note_sha256": note_hash(self.note), "model": self.model,
            "edition": self.result.edition if self.result else "",
            "codes": [{**i.suggestion.to_dict(), "decision": i.decision.value,
                       "added_by_hand": i.added_by_hand} for i in self.items],
        }, indent=2, ensure_ascii=False)

    def audit_record(self, include_note: bool = False) -> dict:
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "note_sha256": note_hash(self.note), "note_chars": len(self.note),
            "model": self.model, "edition": self.result.edition if self.result else "",
            "suggested": [i.suggestion.code for i in self.items if not i.added_by_hand],
            "accepted": [i.suggestion.code for i in self.accepted],
            "rejected": [i.suggestion.code for i in self.items if i.decision is Decision.REJECTED],
            "added_by_hand": [i.suggestion.code for i in self.items if i.added_by_hand],
            "review_seconds": round(time.time() - self.started_at, 1),
        }
        if include_note:
            record["note"] = self.note
        return record


def note_hash(note: str) -> str:
    return hashlib.sha256(note.encode("utf-8")).hexdigest()
