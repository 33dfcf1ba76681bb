"""Work off the UI thread: loading a model, suggesting codes (cancellable), asking a local
server which models it offers.

A worker is a QObject moved to its own QThread (vorta's pattern); it reports through signals,
which Qt delivers on the UI thread.
"""
from __future__ import annotations

import gc
import threading
import time

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal, Slot

from desktop.model_choice import ModelChoice, open_pipeline, server_models
from models.errors import CoderError
from models.notes import NoteError
from models.pipeline import Cancelled, Pipeline


class LoadModelWorker(QObject):
    # Each report names its request: the window keeps only the load it asked for last.
    loaded = Signal(int, object, float)  # request, Pipeline, seconds
    failed = Signal(int, str)  # request, message

    def __init__(self, choice: ModelChoice, request: int = 0):
        super().__init__()
        self.choice = choice  # its allow_remote is the user's opt-in; the runtime checks it again
        self.request = request

    @Slot()
    def run(self) -> None:
        started = time.perf_counter()
        try:
            pipeline = open_pipeline(self.choice)  # the bundle's retriever, the chosen model
        except CoderError as exc:
            self.failed.emit(self.request, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a model must never take the app down
            self.failed.emit(self.request, f"The model could not be loaded: {exc}")
            return
        self.loaded.emit(self.request, pipeline, time.perf_counter() - started)


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
        self.done = threading.Event()  # set once run() no longer uses the pipeline's model

    def cancel(self) -> None:
        self.cancel_event.set()

    @Slot()
    def run(self) -> None:
        # What exists now (the code set, the retriever, the model, the libraries) lives as long as
        # the app: out of the cyclic collector's full passes, which hold the GIL, and so freeze the
        # UI, for a time that grows with everything ever loaded. The run's own objects stay
        # collected; results are freed by reference counting when the next run replaces them.
        gc.freeze()
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
        finally:
            self.done.set()


class ServerModelsWorker(QObject):
    """The models a local server (Ollama, LM Studio) offers now, for Settings: an HTTP call, which
    can take seconds when the server is busy, so never on the UI thread."""
    finished = Signal(str, str, object)  # kind, server URL, names (None: nothing answers there)

    def __init__(self, kind: str, timeout: float = 5.0):
        super().__init__()
        self.kind = kind
        self.timeout = timeout  # off the UI thread a busy server may take its time

    @Slot()
    def run(self) -> None:
        try:
            url, names = server_models(self.kind, timeout=self.timeout)
        except Exception:  # noqa: BLE001 - an odd answer must not leave Settings waiting forever
            url, names = "", None
        self.finished.emit(self.kind, url, names)


_detached: list[QObject] = []


def start_detached(worker: QObject) -> QThread:
    """`start` for a worker whose requester may be gone before it reports (a closed dialog): the
    thread belongs to the application, and the worker is referenced here until Qt deletes it
    (when its thread ends). Qt drops a report whose receiver was deleted."""
    _detached[:] = [w for w in _detached if shiboken6.isValid(w)] + [worker]
    return start(worker, QCoreApplication.instance())


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
