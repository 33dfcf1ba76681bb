"""`python -m desktop` (or `icd10-coder`): the coder's app.

    python -m desktop                      # the model chosen in Settings, else the newest build
    python -m desktop --model FILE.gguf    # or an ONNX folder, `retrieval`, ollama:NAME, openai:URL#MODEL
    python -m desktop --self-test          # load the model, suggest for a sample note, exit 0/1
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

SAMPLE_NOTE = (
    "HISTORY OF PRESENT ILLNESS: 67-year-old woman with type 2 diabetes mellitus and essential "
    "hypertension presents with three days of productive cough and fever. She denies chest pain. "
    "Chest X-ray shows right lower lobe consolidation.\n\n"
    "ASSESSMENT:\n1. Community-acquired pneumonia, right lower lobe.\n"
    "2. Type 2 diabetes mellitus without complications.\n3. Essential hypertension.\n\n"
    "PLAN: Amoxicillin-clavulanate; continue metformin and lisinopril.")


def choice_from_arg(value: str):
    from desktop.model_choice import ModelChoice

    if value == "retrieval":
        return ModelChoice("retrieval")
    for prefix in ("ollama:", "openai:"):
        if value.startswith(prefix):
            return ModelChoice(prefix[:-1], value[len(prefix):])
    path = Path(value)
    return ModelChoice("onnx" if path.is_dir() else "gguf", str(path.resolve()))


def bundle_choice(folder: str):
    """What a bundle folder runs by default (retrieval when it has no model, or says so)."""
    from desktop.model_choice import bundle_default
    from models import bundle

    try:
        return bundle_default(bundle.read(folder))
    except bundle.BundleError as exc:
        raise SystemExit(f"error: {exc}") from exc


def self_test(window, app, timeout_s: float = 300, screenshot: str | None = None) -> int:
    """Through the real window: load, suggest for SAMPLE_NOTE, check the table."""
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtGui import QFont, QFontMetrics

    if not QFontMetrics(QFont()).inFont("A"):
        print("self-test: FAIL: no usable font; every text would render as boxes. Install fonts "
              "(e.g. fonts-dejavu-core).", file=sys.stderr)
        return 1

    def wait(signal_owner_ready) -> bool:
        loop = QEventLoop()
        timer = QTimer(singleShot=True, interval=int(timeout_s * 1000))
        timer.timeout.connect(loop.quit)
        check = QTimer(interval=50)
        check.timeout.connect(lambda: signal_owner_ready() and loop.quit())
        timer.start()
        check.start()
        loop.exec()
        check.stop()
        return signal_owner_ready()

    window.load_model()
    if not wait(lambda: window.pipeline is not None or bool(window.last_error)) or window.pipeline is None:
        print(f"self-test: FAIL: model did not load: {window.last_error or 'timeout'}", file=sys.stderr)
        return 1
    window.editor.setPlainText(SAMPLE_NOTE)
    window.suggest()
    if not wait(lambda: window.suggest_worker is None) or window.review is None:
        print(f"self-test: FAIL: no suggestions: {window.last_error or 'timeout'}", file=sys.stderr)
        return 1
    codes = [i.suggestion.code for i in window.review.items]
    print(f"self-test: model {window.choice.label()}; {window.pipeline.cs.edition}; "
          f"suggested {', '.join(codes) or 'nothing'} in {window.review.result.seconds:.1f} s")
    if not codes:
        print("self-test: FAIL: the model suggested no code for the sample note.", file=sys.stderr)
        return 1
    if screenshot:  # what the window showed, for a bug report or the docs
        window.show()
        window.resize(1200, 760)
        app.processEvents()
        window.grab().save(screenshot)
    print("self-test: OK")
    return 0


def _single_instance_lock(app):
    """The lock while this window runs, or False (after saying why) when another one does: two
    windows would review against the same settings and audit log."""
    from PySide6.QtCore import QLockFile
    from PySide6.QtWidgets import QMessageBox

    from desktop.audit import default_path

    default_path().parent.mkdir(parents=True, exist_ok=True)
    lock = QLockFile(str(default_path().parent / "app.lock"))  # a crashed window's lock is stale
    if lock.tryLock(200):
        return lock
    info = lock.getLockInfo()
    pid = next((x for x in info if isinstance(x, int) and not isinstance(x, bool)), "?") \
        if isinstance(info, tuple) else "?"
    message = (f"ICD-10-CM Coder is already running (process {pid}). Use that window; close it "
               "first to start a new one.")
    print(f"error: {message}", file=sys.stderr)
    if app.platformName() != "offscreen":
        QMessageBox.warning(None, "Already running", message)
    return False


def _icon_path() -> Path | None:
    # Next to the code in a checkout; at the bundle's root when packaged.
    for folder in (Path(__file__).resolve().parents[1] / "packaging", Path(getattr(sys, "_MEIPASS", "/nonexistent"))):
        if (folder / "icd10-coder.svg").is_file():
            return folder / "icd10-coder.svg"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m desktop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a .gguf file, an ONNX folder, `retrieval`, ollama:NAME "
                                        "or openai:URL#MODEL (default: Settings, else the newest build)")
    parser.add_argument("--bundle", help="a coder bundle folder: its default model and retriever "
                                         "(with --model, the retriever for that model)")
    parser.add_argument("note", nargs="?", help="a plain-text note to open (as the menu entry passes it)")
    parser.add_argument("--screenshot", metavar="PNG", help="with --self-test: save the window")
    parser.add_argument("--self-test", action="store_true",
                        help="load the model, suggest codes for a sample note, exit 0 (ok) or 1")
    args = parser.parse_args(argv)
    try:
        from PySide6.QtCore import QSettings
        from PySide6.QtWidgets import QApplication
    except ImportError:
        print("error: the app needs PySide6: run `make setup`.", file=sys.stderr)
        return 2

    from desktop._qt import workers
    from desktop._qt.main_window import MainWindow
    from desktop._qt.settings_dialog import load_choice
    from desktop.model_choice import default_choice

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName("icd10-coder")
    app.setApplicationName("ICD-10-CM Coder")
    app.setDesktopFileName("icd10-coder")
    icon = _icon_path()
    if icon is not None:
        from PySide6.QtGui import QIcon

        app.setWindowIcon(QIcon(str(icon)))
    settings = QSettings()
    lock = None if args.self_test else _single_instance_lock(app)
    if lock is False:
        return 3
    choice = choice_from_arg(args.model) if args.model else None
    if args.bundle:
        choice = choice or bundle_choice(args.bundle)
        choice.bundle = str(Path(args.bundle).resolve())
    choice = choice or load_choice(settings) or default_choice()
    window = MainWindow(settings, choice)
    if args.self_test:
        if choice is None:
            print("self-test: FAIL: no model found. Run `make all` to build one, or pass --model.",
                  file=sys.stderr)
            return 1
        try:
            return self_test(window, app, screenshot=args.screenshot)
        finally:
            workers.join(window)  # the load and suggest threads end before the process does
    window.show()
    if args.note:
        window.open_note(args.note)
    window.load_model()
    code = app.exec()
    workers.join(window)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
