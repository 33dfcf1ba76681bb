"""Work off the UI thread: loading a model, suggesting codes (cancellable), asking a local
server which models it offers.

A worker is a QObject moved to its own QThread (vorta's pattern); it reports through signals,
which Qt delivers on the UI thread. The server look-up, whose requester may be gone before it
answers, is a plain thread polled by its dialog instead (`ServerModelsLookup`).
"""
from __future__ import annotations

import gc
import threading
import time
from concurrent.futures import Future

from PySide6.QtCore import QObject, QThread, Signal, Slot

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


class ServerModelsLookup:
    """The models a local server (Ollama, LM Studio) offers now, for Settings: an HTTP call, which
    can take seconds when the server is busy, so never on the UI thread.

    It runs on a plain Python thread that touches no Qt object, and Settings polls `done()` from a
    timer it owns: the dialog may be closed and deleted before a busy server answers, and a
    QObject worker reporting to it then raced the deletion (a crash in the worker's thread under
    load). Here a closed dialog's timer is simply gone, and the answer is dropped."""

    def __init__(self, kind: str, timeout: float = 5.0):
        self.kind = kind
        self._answer: Future = Future()
        threading.Thread(target=self._run, args=(timeout,), name=f"server-models-{kind}",
                         daemon=True).start()  # daemon: a busy server never holds the app's exit

    def _run(self, timeout: float) -> None:
        try:
            url, names = server_models(self.kind, timeout=timeout)
        except Exception:  # noqa: BLE001 - an odd answer must not leave Settings waiting forever
            url, names = "", None
        self._answer.set_result((url, names))

    def done(self) -> bool:
        return self._answer.done()

    def result(self) -> tuple[str, list[str] | None]:
        """(server URL, model names); names None: nothing answers there."""
        return self._answer.result()


def join(owner: QObject, timeout_ms: int = 10_000) -> None:
    """Wait for the worker threads `owner` started to end (their worker has reported; the thread
    is winding down): a process that exits while one still runs is aborted by Qt."""
    for thread in owner.findChildren(QThread):
        thread.quit()
        thread.wait(timeout_ms)


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
