"""Code look-up: search FY2026 by words or code, browse parents and children, read inclusion
terms and Excludes1 notes, and add a code to the review by hand."""
from __future__ import annotations

import html

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from models.codeset import CodeSet, InvalidCodeFormat, normalize


class LookupPanel(QWidget):
    add_requested = Signal(str, str)  # code, description

    def __init__(self, cs: CodeSet, parent=None):
        super().__init__(parent)
        self.cs = cs
        self.current: str | None = None
        self.search = QLineEdit(placeholderText="Search FY2026 by words or code, e.g. “type 2 "
                                                "diabetes with CKD” or E11.22")
        self.search.setClearButtonEnabled(True)
        self.results = QTreeWidget()
        self.results.setHeaderLabels(["Code", "Description"])
        self.results.setRootIsDecorated(False)
        self.results.setUniformRowHeights(True)
        self.results.header().setStretchLastSection(True)
        self.results.header().setSectionResizeMode(0, QHeaderView.ResizeToContents)
        self.detail = QTextBrowser()
        self.detail.setOpenLinks(False)
        self.detail.anchorClicked.connect(lambda url: self.show_code(url.toString()))
        self.add_button = QPushButton("Add to accepted codes")
        self.add_button.setEnabled(False)
        self.status = QLabel()
        self.status.setObjectName("lookupStatus")

        splitter = QSplitter(Qt.Vertical)
        splitter.addWidget(self.results)
        splitter.addWidget(self.detail)
        splitter.setSizes([200, 300])
        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        buttons.addWidget(self.add_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.search)
        layout.addWidget(splitter, 1)
        layout.addLayout(buttons)

        self._debounce = QTimer(self, singleShot=True, interval=150)
        self._debounce.timeout.connect(self.run_search)
        self.search.textChanged.connect(lambda _: self._debounce.start())
        self.search.returnPressed.connect(self.run_search)
        self.results.currentItemChanged.connect(
            lambda item, _prev: item and self.show_code(item.data(0, Qt.UserRole)))
        self.add_button.clicked.connect(self._add_current)

    def run_search(self) -> None:
        text = self.search.text().strip()
        self.results.clear()
        if not text:
            self.status.setText("")
            return
        hits = []
        try:  # a code typed as such goes first
            code = normalize(text)
            if self.cs.is_valid(code):
                hits.append((code, self.cs.description(code), self.cs.is_billable(code)))
        except InvalidCodeFormat:
            pass
        hits += [(h.code, h.description, h.billable) for h in self.cs.search(text, limit=50)
                 if h.code not in {c for c, _, _ in hits}]
        for code, description, billable in hits:
            item = QTreeWidgetItem([code, description + ("" if billable else "  (category, not billable)")])
            item.setData(0, Qt.UserRole, code)
            item.setToolTip(1, description)
            if not billable:
                item.setForeground(1, self.palette().placeholderText())
            self.results.addTopLevelItem(item)
        self.status.setText(f"{len(hits)} codes" if hits else "No code matches those words.")
        if hits:
            self.results.setCurrentItem(self.results.topLevelItem(0))

    def show_code(self, code: str) -> None:
        if not self.cs.is_valid(code):
            return
        self.current = code
        r = self.cs.record(code)
        link = lambda c: f'<a href="{c}">{c}</a> {html.escape(self.cs.description(c))}'  # noqa: E731
        parts = [f"<h3>{code} &nbsp; {html.escape(r.description)}</h3>",
                 f"<p><b>{'Billable' if r.billable else 'Not billable: choose a more specific code'}</b>"
                 f" · {html.escape(r.edition)}</p>"]
        if r.ancestors:
            parts.append("<p><b>Parents</b><br>" + "<br>".join(link(a) for a in reversed(r.ancestors)) + "</p>")
        if r.children:
            parts.append("<p><b>Children</b><br>" + "<br>".join(link(c) for c in r.children[:60]) + "</p>")
        if r.inclusion_terms:
            parts.append("<p><b>Inclusion terms</b><br>"
                         + "<br>".join(html.escape(t) for t in r.inclusion_terms) + "</p>")
        excludes = self.cs.excludes1(code)
        if excludes:
            parts.append("<p><b>Excludes1</b> (never coded together)<br>" + "<br>".join(
                f"{html.escape(e.note)} <i>(from {_source(e.source)})</i>" for e in excludes) + "</p>")
        self.detail.setHtml("".join(parts))
        self.add_button.setEnabled(r.billable)
        self.add_button.setToolTip("" if r.billable else "Only billable codes can be accepted.")

    def _add_current(self) -> None:
        if self.current and self.cs.is_billable(self.current):
            self.add_requested.emit(self.current, self.cs.description(self.current))


def _source(source: str) -> str:
    return f"chapter {source}" if source.isdigit() else html.escape(source)
