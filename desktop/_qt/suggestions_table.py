"""The results table: one row per suggested (or hand-added) code, with its decision."""
from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt
from PySide6.QtGui import QBrush, QColor

from desktop.review import Decision, Review
from models.pipeline import Flag

FLAG_TEXT = {
    Flag.NOT_BILLABLE: "not billable",
    Flag.MORE_SPECIFIC: "more specific available",
    Flag.EXCLUDES1: "Excludes1 conflict",
    Flag.UNSUPPORTED: "no evidence found",
    Flag.SPECIFIC_SUGGESTED: "suggested too, more specific",
    Flag.COMBINATION: "one code for",
    Flag.STATED: "stated in the assessment",
    Flag.ADDITIONAL: "additional code for",
    Flag.LONG_TERM: "long-term use stated",
    Flag.ENCOUNTER: "what the visit was for",
    Flag.HISTORY: "history stated in the note",
}
COLUMNS = ("Code", "Description", "Confidence", "Flags", "Decision")
_DECISION_COLOURS = {Decision.ACCEPTED: QColor("#e3f4e1"), Decision.REJECTED: QColor("#f6e0e0")}
_DECISION_TEXT = {Decision.PENDING: "", Decision.ACCEPTED: "✓ accepted", Decision.REJECTED: "✗ rejected"}


def flag_text(item) -> str:
    s = item.suggestion
    parts = []
    for flag in s.flags:
        text = FLAG_TEXT.get(flag, flag)
        if flag == Flag.EXCLUDES1 and s.conflicts_with:
            text += f" with {', '.join(s.conflicts_with)}"
        if flag == Flag.SPECIFIC_SUGGESTED and s.more_specific:
            text = f"{', '.join(s.more_specific)} {text}"
        if flag == Flag.COMBINATION and s.combines:
            text += f" {' + '.join(s.combines)}"
        if flag == Flag.ADDITIONAL and s.asked_by:
            text += f" {', '.join(s.asked_by)}"
        if flag == Flag.NOT_BILLABLE and s.billable_children:
            text += f" (try {', '.join(s.billable_children[:3])})"
        parts.append(text)
    if item.added_by_hand:
        parts.append("added by hand")
    return "; ".join(parts)


class SuggestionsModel(QAbstractTableModel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.review: Review | None = None

    def set_review(self, review: Review | None) -> None:
        self.beginResetModel()
        self.review = review
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt's name
        return 0 if parent.isValid() or self.review is None else len(self.review.items)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802
        return len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):  # noqa: N802
        if role == Qt.DisplayRole and orientation == Qt.Horizontal:
            return COLUMNS[section]
        return None

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid() or self.review is None:
            return None
        item = self.review.items[index.row()]
        s, col = item.suggestion, index.column()
        if role == Qt.DisplayRole:
            return (s.code, s.description, f"{s.confidence:.0%}", flag_text(item),
                    _DECISION_TEXT[item.decision])[col]
        if role == Qt.ToolTipRole:
            if col == 3 and flag_text(item):
                return flag_text(item)
            if s.evidence:
                return f"Evidence: “{s.evidence.text}”"
            if Flag.UNSUPPORTED in s.flags:
                return "No words of the note were found for this code: check before accepting."
            return s.description
        if role == Qt.BackgroundRole and item.decision in _DECISION_COLOURS:
            return QBrush(_DECISION_COLOURS[item.decision])
        if role == Qt.ForegroundRole and Flag.UNSUPPORTED in s.flags and not item.added_by_hand:
            return QBrush(QColor("#8a8a8a"))  # listed apart, below the supported codes
        if role == Qt.ForegroundRole and col == 3 and s.flags:
            return QBrush(QColor("#a0522d"))
        if role == Qt.TextAlignmentRole and col == 2:
            return int(Qt.AlignRight | Qt.AlignVCenter)
        return None

    def decide(self, row: int, decision: Decision) -> None:
        if self.review is None or not 0 <= row < len(self.review.items):
            return
        self.review.decide(row, decision)
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def add_code(self, code: str, description: str) -> int:
        codes = [i.suggestion.code for i in self.review.items]
        if code in codes:  # already suggested: accepting it is what the coder meant
            row = self.review.add_code(code, description)
            self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))
            return row
        self.beginInsertRows(QModelIndex(), len(codes), len(codes))
        row = self.review.add_code(code, description)
        self.endInsertRows()
        return row
