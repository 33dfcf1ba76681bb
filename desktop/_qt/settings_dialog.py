"""Settings: which model runs, and the privacy choices. Remembered with QSettings."""
from __future__ import annotations

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.model_choice import ModelChoice, default_advice, discover

from . import workers

KIND_LABELS = {
    "gguf": "GGUF model file (llama.cpp, on this computer)",
    "onnx": "ONNX model folder (ONNX Runtime, on this computer)",
    "ollama": "Ollama model (local Ollama server)",
    "openai": "LM Studio or OpenAI-compatible server",
    "retrieval": "No language model (retrieval only)",
}
PHI_WARNING = ("Notes may contain protected health information. Allow a server on another "
               "computer only if it is approved to receive PHI.")


def load_choice(settings: QSettings) -> ModelChoice | None:
    kind = settings.value("model/kind", "", str)
    if not kind:
        return None
    return ModelChoice(kind, settings.value("model/value", "", str),
                       settings.value("model/allow_remote", False, bool))


def save_choice(settings: QSettings, choice: ModelChoice) -> None:
    settings.setValue("model/kind", choice.kind)
    settings.setValue("model/value", choice.value)
    settings.setValue("model/allow_remote", choice.allow_remote)


class SettingsDialog(QDialog):
    def __init__(self, choice: ModelChoice | None, store_note: bool, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(620)
        self.kind = QComboBox()
        for kind, label in KIND_LABELS.items():
            self.kind.addItem(label, kind)
        self.value = QComboBox(editable=True)
        self.value.setMinimumContentsLength(40)
        self.browse = QPushButton("Browse…")
        self.server_status = QLabel(wordWrap=True)
        self.server_status.setStyleSheet("color: #555;")
        self.advice = QLabel(default_advice(), wordWrap=True)  # why the default is what it is
        self.advice.setStyleSheet("color: #555;")
        self.allow_remote = QCheckBox("Allow servers on other computers")
        self.warning = QLabel(PHI_WARNING, wordWrap=True)
        self.warning.setStyleSheet("color: #8a4b00;")
        self.store_note = QCheckBox("Keep the note text in the audit log (off: only its fingerprint)")
        self.store_note.setChecked(store_note)

        row = QWidget()
        row_layout = QHBoxLayout(row)
        row_layout.setContentsMargins(0, 0, 0, 0)
        row_layout.addWidget(self.value, 1)
        row_layout.addWidget(self.browse)
        form = QFormLayout()
        form.addRow("Model", self.kind)
        form.addRow("", row)
        form.addRow("", self.server_status)
        form.addRow("", self.advice)
        form.addRow("", self.allow_remote)
        form.addRow("", self.warning)
        form.addRow("Audit log", self.store_note)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)

        # The server look-up's answer is polled by a timer the dialog owns, so that a dialog closed
        # before a busy server answers leaves nothing behind to call it (workers.ServerModelsLookup).
        self._lookup: workers.ServerModelsLookup | None = None
        self._lookup_timer = QTimer(self, interval=50)
        self._lookup_timer.timeout.connect(self._lookup_answered)
        self.browse.clicked.connect(self._browse)
        self.allow_remote.toggled.connect(self.warning.setVisible)
        choice = choice or ModelChoice()
        self.kind.setCurrentIndex(max(0, self.kind.findData(choice.kind)))
        self.kind.currentIndexChanged.connect(self._kind_changed)  # after: one look-up, not two
        self._kind_changed()
        if choice.value:  # else the first model found stays proposed
            self.value.setCurrentText(choice.value)
        self.allow_remote.setChecked(choice.allow_remote)
        self.warning.setVisible(choice.allow_remote)

    def _kind_changed(self) -> None:
        kind = self.kind.currentData()
        self.value.clear()
        if kind in ("gguf", "onnx"):
            for model in discover():
                if model.kind == kind:
                    self.value.addItem(str(model.path))
        elif kind in ("ollama", "openai"):
            # What the local server offers now, if it runs: HTTP, so on a thread; the list fills
            # when it answers, and the dialog stays usable meanwhile.
            self.server_status.setText("Looking for models…")
            self._lookup = workers.ServerModelsLookup(kind)
            self._lookup_timer.start()
        placeholder = {"ollama": "icd10-coder:q4_k_m", "openai": "http://127.0.0.1:1234/v1#icd10-coder"}
        self.value.lineEdit().setPlaceholderText(placeholder.get(kind, ""))
        self.value.setEnabled(kind != "retrieval")
        self.browse.setVisible(kind in ("gguf", "onnx"))
        self.server_status.setVisible(kind in ("ollama", "openai"))
        self.advice.setVisible(bool(self.advice.text()) and kind in ("gguf", "onnx", "retrieval"))
        self.allow_remote.setVisible(kind in ("ollama", "openai"))
        self.warning.setVisible(kind in ("ollama", "openai") and self.allow_remote.isChecked())

    def _lookup_answered(self) -> None:
        if self._lookup is None or not self._lookup.done():
            return
        self._lookup_timer.stop()
        lookup, self._lookup = self._lookup, None
        self._models_found(lookup.kind, *lookup.result())

    def _models_found(self, kind: str, url: str, names: list[str] | None) -> None:
        if kind != self.kind.currentData():  # the user picked another kind meanwhile
            return
        typed = self.value.currentText()
        for name in names or []:
            if self.value.findText(name) < 0:
                self.value.addItem(name)
        if typed:  # the saved or typed model stays; else the first one found is proposed
            self.value.setCurrentText(typed)
        server = "Ollama" if kind == "ollama" else "LM Studio"
        self.server_status.setText(
            f"No {server} answers at {url or 'its address'}"
            + (": start it (`ollama serve`)." if kind == "ollama"
               else ": start its server (Developer tab), or type another server's URL#model.")
            if names is None else f"{server} at {url} offers {len(names)} model(s).")

    def _browse(self) -> None:
        if self.kind.currentData() == "gguf":
            path, _ = QFileDialog.getOpenFileName(self, "Choose a GGUF model", "", "GGUF models (*.gguf)")
        else:
            path = QFileDialog.getExistingDirectory(self, "Choose an exported ONNX folder")
        if path:
            self.value.setCurrentText(path)

    def choice(self) -> ModelChoice:
        kind = self.kind.currentData()
        return ModelChoice(kind, self.value.currentText().strip(),
                           kind in ("ollama", "openai") and self.allow_remote.isChecked())
