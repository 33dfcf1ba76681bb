"""The main window: the note on the left, the suggestions and the code look-up on the right."""
from __future__ import annotations

import html
import time
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction, QColor, QGuiApplication, QKeySequence, QShortcut, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QTextEdit,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from desktop import audit
from desktop.model_choice import ModelChoice, ModelChoiceError, runtime_spec
from desktop.review import Decision, Review
from models import codeset as codeset_mod
from models.files import write_text_atomic
from models.notes import NoteError, read_note_file

from . import workers
from .lookup_panel import LookupPanel
from .settings_dialog import SettingsDialog, load_choice, save_choice
from .suggestions_table import COLUMNS, SuggestionsModel, flag_text

EVIDENCE_COLOUR = QColor("#ffe58a")
CLOSE_WAIT_S = 3.0  # on close, how long a cancelled run may take to let go of its model


class NoteEditor(QPlainTextEdit):
    """The note: typed, pasted, or a .txt file dropped on it."""
    file_dropped = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setPlaceholderText("Paste a clinical note here, open a .txt file, or drop one here.\n\n"
                                "Then press Ctrl+Enter to suggest ICD-10-CM codes.")
        self.setLineWrapMode(QPlainTextEdit.WidgetWidth)

    def canInsertFromMimeData(self, source):  # noqa: N802 - Qt's name
        return source.hasUrls() or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source):  # noqa: N802
        files = [u.toLocalFile() for u in source.urls() if u.isLocalFile()] if source.hasUrls() else []
        if files:
            self.file_dropped.emit(files[0])
        else:
            super().insertFromMimeData(source)


class MainWindow(QMainWindow):
    model_ready = Signal()

    def __init__(self, settings: QSettings | None = None, model: ModelChoice | None = None):
        super().__init__()
        self.settings = settings or QSettings()
        self.cs = codeset_mod.load()
        self.pipeline = None
        self.choice: ModelChoice | None = model or load_choice(self.settings)
        self.review: Review | None = None
        self.review_logged = False
        self.suggest_worker: workers.SuggestWorker | None = None
        self._run_model = ""  # the model the running suggestion uses, for its review
        self._load_request = 0  # the load asked for last: the only one whose pipeline is kept
        # Loads still running, by request: a worker without a Python reference would be collected.
        self._loads: dict[int, workers.LoadModelWorker] = {}
        self._retired: list = []  # replaced pipelines whose runtime is closed once no run uses it
        self.last_error = ""
        self.setWindowTitle("ICD-10-CM Coder")
        self.resize(1360, 820)
        self._build()
        self._update_actions()

    # --- layout ----------------------------------------------------------------------------
    def _build(self) -> None:
        self.editor = NoteEditor()
        self.editor.file_dropped.connect(self.open_note)
        self.editor.textChanged.connect(self._update_actions)

        self.table_model = SuggestionsModel(self)
        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(30)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.Interactive)
        header.setSectionResizeMode(1, QHeaderView.Stretch)
        for col, width in zip(range(len(COLUMNS)), (82, 300, 92, 190, 100)):
            if col != 1:
                self.table.setColumnWidth(col, width)
        self.table.selectionModel().currentRowChanged.connect(lambda cur, _: self.show_evidence(cur.row()))

        self.detail = QLabel(wordWrap=True)
        self.detail.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.detail.setMinimumHeight(54)
        self.accept_button = QPushButton("Accept  (A)")
        self.reject_button = QPushButton("Reject  (R)")
        self.copy_button = QPushButton("Copy accepted codes")
        self.accept_button.clicked.connect(lambda: self.decide(Decision.ACCEPTED))
        self.reject_button.clicked.connect(lambda: self.decide(Decision.REJECTED))
        self.copy_button.clicked.connect(self.copy_accepted)
        self.summary = QLabel()
        buttons = QHBoxLayout()
        buttons.addWidget(self.accept_button)
        buttons.addWidget(self.reject_button)
        buttons.addStretch(1)
        buttons.addWidget(self.summary)
        buttons.addWidget(self.copy_button)
        review_tab = QWidget()
        review_layout = QVBoxLayout(review_tab)
        review_layout.addWidget(self.table, 1)
        review_layout.addWidget(self.detail)
        review_layout.addLayout(buttons)

        self.lookup = LookupPanel(self.cs)
        self.lookup.add_requested.connect(self.add_code)
        self.tabs = QTabWidget()
        self.tabs.addTab(review_tab, "Suggestions")
        self.tabs.addTab(self.lookup, "Code look-up")

        splitter = QSplitter(Qt.Horizontal)
        splitter.addWidget(self.editor)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(0, 5)
        splitter.setStretchFactor(1, 6)
        splitter.setSizes([580, 780])
        self.setCentralWidget(splitter)

        toolbar = QToolBar("Main")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonTextOnly)
        self.addToolBar(toolbar)
        self.open_action = self._action(toolbar, "Open note…", QKeySequence.Open, self.choose_note)
        self.suggest_action = self._action(toolbar, "Suggest codes", "Ctrl+Return", self.suggest)
        self.cancel_action = self._action(toolbar, "Cancel", "Esc", self.cancel)
        toolbar.addSeparator()
        self.copy_action = self._action(toolbar, "Copy accepted", "Ctrl+Shift+C", self.copy_accepted)
        self.export_action = self._action(toolbar, "Export…", "Ctrl+E", self.choose_export)
        toolbar.addSeparator()
        self._action(toolbar, "Settings…", "Ctrl+,", self.open_settings)
        self._action(toolbar, "Audit log", None, self.show_audit_log)
        QShortcut(QKeySequence("Ctrl+Enter"), self, self.suggest)
        for key, decision in (("A", Decision.ACCEPTED), ("R", Decision.REJECTED)):
            QShortcut(QKeySequence(key), self.table, lambda d=decision: self.decide(d))

        self.model_label = QLabel()
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setVisible(False)
        self.statusBar().addPermanentWidget(self.progress)
        self.statusBar().addPermanentWidget(self.model_label)

    def _action(self, toolbar: QToolBar, text: str, shortcut, slot) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
            action.setToolTip(f"{text} ({QKeySequence(shortcut).toString(QKeySequence.NativeText)})")
        action.triggered.connect(slot)
        toolbar.addAction(action)
        return action

    def _update_actions(self) -> None:
        busy = self.suggest_worker is not None
        has_note = bool(self.editor.toPlainText().strip())
        self.suggest_action.setEnabled(not busy and has_note and self.pipeline is not None)
        self.cancel_action.setEnabled(busy)
        accepted = bool(self.review and self.review.accepted)
        for widget in (self.copy_action, self.export_action, self.copy_button):
            widget.setEnabled(accepted)
        has_rows = bool(self.review and self.review.items)
        self.accept_button.setEnabled(has_rows)
        self.reject_button.setEnabled(has_rows)
        if self.review:
            n = len(self.review.items)
            self.summary.setText(f"{n} code{'s' * (n != 1)} · {len(self.review.accepted)} accepted")
        else:
            self.summary.setText("")

    # --- model ----------------------------------------------------------------------------
    def load_model(self, choice: ModelChoice | None = None) -> None:
        choice = choice or self.choice
        if choice is None:
            self.model_label.setText("No model chosen")
            self.show_error("No model", "No model is chosen yet. Build one with `make all`, or "
                            "pick a GGUF file in Settings.")
            return
        try:
            runtime_spec(choice)  # a missing file or a refused server says so before loading
        except ModelChoiceError as exc:
            self.model_label.setText("No model loaded")
            self.show_error("Model not available", str(exc))
            return
        self.choice = choice
        self._retire(self.pipeline)
        self.pipeline = None
        self.model_label.setText(f"Loading {choice.label()}…")
        self._update_actions()
        self._load_request += 1
        worker = workers.LoadModelWorker(choice, request=self._load_request)
        worker.loaded.connect(self._model_loaded)
        worker.failed.connect(self._model_failed)
        self._loads[self._load_request] = worker
        workers.start(worker, self)

    def _model_loaded(self, request: int, pipeline, seconds: float) -> None:
        self._loads.pop(request, None)
        if request != self._load_request:  # the user asked for another model since: drop this one
            self._retire(pipeline)
            return
        self.pipeline = pipeline
        self.model_label.setText(f"Model: {self.choice.label()} · {pipeline.cs.edition} · "
                                 f"loaded in {seconds:.1f} s")
        self._update_actions()
        self.model_ready.emit()

    def _model_failed(self, request: int, message: str) -> None:
        self._loads.pop(request, None)
        if request != self._load_request:  # a load nobody waits for any more
            return
        self.model_label.setText("No model loaded")
        self.show_error("The model could not be loaded", message)
        self._update_actions()

    def _retire(self, pipeline) -> None:
        """A replaced pipeline: its selector's model (in memory, or a server connection) is
        closed, now or when the run still using it ends."""
        if pipeline is not None:
            self._retired.append(pipeline)
        run = self.suggest_worker
        in_use = run.pipeline if run is not None and not run.done.is_set() else None
        for old in [p for p in self._retired if p is not in_use]:
            self._retired.remove(old)
            old.selector.close()

    def open_settings(self) -> None:
        dialog = SettingsDialog(self.choice, self.settings.value("audit/store_note", False, bool), self)
        if dialog.exec() == SettingsDialog.Accepted:
            self.settings.setValue("audit/store_note", dialog.store_note.isChecked())
            choice = dialog.choice()
            save_choice(self.settings, choice)
            self.load_model(choice)
        dialog.deleteLater()  # else every Settings opened stays, a child of the window

    # --- note -----------------------------------------------------------------------------
    def choose_note(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a note", "", "Text files (*.txt);;All files (*)")
        if path:
            self.open_note(path)

    def open_note(self, path: str) -> None:
        try:
            checked = read_note_file(path)
        except (NoteError, OSError) as exc:
            self.show_error("Cannot open the note", str(exc))
            return
        self.editor.setPlainText(checked.text)
        self.statusBar().showMessage(" ".join([f"Opened {Path(path).name}.", *checked.warnings]), 8000)

    # --- suggest --------------------------------------------------------------------------
    def suggest(self) -> None:
        if self.suggest_worker is not None or self.pipeline is None:
            return
        note = self.editor.toPlainText()
        self._log_review()
        worker = workers.SuggestWorker(self.pipeline, note)
        self._run_model = self.choice.label() if self.choice else ""  # Settings may change mid-run
        worker.progress.connect(self._progress)
        worker.finished.connect(self._suggested)  # a bound slot: delivered on the UI thread
        worker.failed.connect(self._suggest_failed)
        worker.cancelled.connect(self._suggest_cancelled)
        self.suggest_worker = worker
        self.progress.setRange(0, 0)  # busy until the first chunk reports
        self.progress.setVisible(True)
        self.statusBar().showMessage("Suggesting codes…")
        self.editor.setReadOnly(True)
        self._update_actions()
        self._suggest_thread = workers.start(worker, self)

    def cancel(self) -> None:
        if self.suggest_worker is not None:
            self.suggest_worker.cancel()
            self.statusBar().showMessage("Cancelling…")

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)

    def _finish_run(self, message: str) -> None:
        self.suggest_worker = None
        self._retire(None)  # a model replaced during the run is free now
        self.progress.setVisible(False)
        self.editor.setReadOnly(False)
        self.statusBar().showMessage(message, 8000)
        self._update_actions()

    def _suggested(self, result) -> None:
        note = self.suggest_worker.note
        self.review = Review.from_result(note, result, self._run_model)
        self.review_logged = False
        self.table_model.set_review(self.review)
        self.tabs.setCurrentIndex(0)
        warnings = f" · {'; '.join(result.warnings)}" if result.warnings else ""
        count = len(result.suggestions)
        self._finish_run(f"{count} code{'' if count == 1 else 's'} suggested in {result.seconds:.1f} s{warnings}")
        if result.suggestions:
            self.table.selectRow(0)
            self.table.setFocus()
        else:
            self.detail.setText("No code found for this note. Search the code set in “Code look-up”.")

    def _suggest_failed(self, message: str) -> None:
        self._finish_run("Suggesting codes failed")
        self.show_error("Cannot suggest codes", message)

    def _suggest_cancelled(self) -> None:
        self._finish_run("Cancelled: nothing was changed")

    # --- review ---------------------------------------------------------------------------
    def show_evidence(self, row: int) -> None:
        if not self.review or not 0 <= row < len(self.review.items):
            self.editor.setExtraSelections([])
            return
        s = self.review.items[row].suggestion
        text = f"<b>{s.code}</b> {html.escape(s.description)}"
        selections = []
        if s.evidence and self.editor.toPlainText() == self.review.note:
            cursor = QTextCursor(self.editor.document())
            cursor.setPosition(s.evidence.start)
            cursor.setPosition(s.evidence.end, QTextCursor.KeepAnchor)
            selection = QTextEdit.ExtraSelection()
            selection.cursor = cursor
            fmt = QTextCharFormat()
            fmt.setBackground(EVIDENCE_COLOUR)
            selection.format = fmt
            selections.append(selection)
            self.editor.setTextCursor(QTextCursor(cursor.block()))  # scroll to it
            self.editor.centerCursor()
            text += f"<br>Evidence: “{html.escape(s.evidence.text)}”"
        elif self.review.items[row].added_by_hand:
            text += "<br>Added by hand from the code look-up."
        else:
            text += "<br>No supporting words found in the note: check before accepting."
        flags = flag_text(self.review.items[row])
        if flags:  # whole here; the table's column may cut it short
            text += f"<br>Flags: {html.escape(flags)}"
        self.editor.setExtraSelections(selections)
        self.detail.setText(text)

    def decide(self, decision: Decision) -> None:
        row = self.table.currentIndex().row()
        if row < 0:
            return
        self.table_model.decide(row, decision)
        self.review_logged = False
        if row + 1 < self.table_model.rowCount():  # move on, as coders review top to bottom
            self.table.selectRow(row + 1)
        self._update_actions()

    def add_code(self, code: str, description: str) -> None:
        if self.review is None:
            self.review = Review(note=self.editor.toPlainText(),
                                 model=self.choice.label() if self.choice else "")
            self.table_model.set_review(self.review)
        row = self.table_model.add_code(code, description)
        self.review_logged = False
        self.table.selectRow(row)
        self.statusBar().showMessage(f"{code} added to the accepted codes", 4000)
        self._update_actions()

    def copy_accepted(self) -> None:
        if not self.review or not self.review.accepted:
            return
        QGuiApplication.clipboard().setText(self.review.clipboard_text())
        self._log_review()
        self.statusBar().showMessage(f"Copied {len(self.review.accepted)} codes to the clipboard", 5000)

    def choose_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export the review", f"codes-{time.strftime('%Y%m%d-%H%M')}.csv",
                                              "CSV (*.csv);;JSON (*.json)")
        if path:
            self.export_review(path)

    def export_review(self, path: str) -> None:
        if not self.review:
            return
        text = self.review.to_json() if path.lower().endswith(".json") else self.review.to_csv()
        try:
            write_text_atomic(path, text)
        except OSError as exc:
            self.show_error("Export failed", f"Could not write {path}: {exc}")
            return
        self._log_review()
        self.statusBar().showMessage(f"Exported to {path}", 5000)

    def _log_review(self) -> None:
        if self.review is None or self.review_logged or not self.review.items:
            return
        record = self.review.audit_record(self.settings.value("audit/store_note", False, bool))
        try:
            audit.append(record)
            self.review_logged = True
        except OSError as exc:
            self.statusBar().showMessage(f"Could not write the audit log: {exc}", 8000)

    def show_audit_log(self) -> None:
        path = audit.default_path()
        records = audit.read(path)
        lines = [f"{r['time']}  {r['model']}  accepted: {', '.join(r['accepted']) or '-'}"
                 for r in records[-200:]]
        box = QMessageBox(QMessageBox.Information, "Audit log",
                          f"{len(records)} reviews in {path}", QMessageBox.Ok, self)
        box.setDetailedText("\n".join(lines) or "No reviews yet.")
        box.open()

    def show_error(self, title: str, message: str) -> None:
        self.last_error = message
        box = QMessageBox(QMessageBox.Warning, title, message, QMessageBox.Ok, self)
        box.open()  # window-modal, not blocking: the app keeps running

    def closeEvent(self, event):  # noqa: N802
        self._log_review()
        self._load_request += 1  # a load still running is dropped (closed) when it reports
        run = self.suggest_worker
        if run is not None:
            run.cancel()
            run.done.wait(CLOSE_WAIT_S)  # a cancel stops a run within a token or a chunk
        self._retire(self.pipeline)  # if the run did not stop in time, when it ends
        self.pipeline = None
        super().closeEvent(event)
