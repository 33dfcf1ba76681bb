"""Work off the UI thread: loading a model and suggesting codes, each cancellable.

A worker is a QObject moved to its own QThread (vorta's pattern); it reports through signals,
which Qt delivers on the UI thread.
"""
from __future__ import annotations

import threading
import time

from PySide6.QtCore import QObject, QThread, Signal, Slot

from models.notes import NoteError
from models.pipeline import Cancelled, Pipeline
from desktop.model_choice import ModelChoice, open_pipeline
from models.errors import CoderError


class LoadModelWorker(QObject):
    loaded = Signal(object, float)  # Pipeline, seconds
    failed = Signal(str)

    def __init__(self, choice: ModelChoice):
        super().__init__()
        self.choice = choice  # its allow_remote is the user's opt-in; the runtime checks it again

    @Slot()
    def run(self) -> None:
        started = time.perf_counter()
        try:
            pipeline = open_pipeline(self.choice)  # the bundle's retriever, the chosen model
        except CoderError as exc:
            self.failed.emit(str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a model must never take the app down
            self.failed.emit(f"The model could not be loaded: {exc}")
            return
        self.loaded.emit(pipeline, time.perf_counter() - started)


class SuggestWorker(QObject):
    progress = Signal(int, int)
    finished = Signal(object)  # SuggestionResult
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, pipeline: Pipeline, note: str):
        super().__init__()
        self.pipeline = pipeline
        self.note = note
        self.cancel_event = threading.Event()

    def cancel(self) -> None:
        self.cancel_event.set()

    @Slot()
    def run(self) -> None:
        try:
            result = self.pipeline.suggest(self.note, cancel=self.cancel_event,
                                           progress=lambda done, total: self.progress.emit(done, total))
        except Cancelled:
            self.cancelled.emit()
        except NoteError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001
            self.failed.emit(f"Suggesting codes failed: {exc}")
        else:
            if self.cancel_event.is_set():
                self.cancelled.emit()
            else:
                self.finished.emit(result)


def start(worker: QObject, owner: QObject) -> QThread:
    """Run `worker.run` on a new thread; the thread and worker are cleaned up when it ends."""
    thread = QThread(owner)
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    for name in ("loaded", "failed", "finished", "cancelled"):
        signal = getattr(worker, name, None)
        if signal is not None:
            signal.connect(thread.quit)
    thread.finished.connect(worker.deleteLater)
    thread.finished.connect(thread.deleteLater)
    thread.start()
    return thread
