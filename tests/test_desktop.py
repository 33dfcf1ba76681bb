"""The desktop app on real widgets (Qt offscreen): the retrieval runtime where the test is about
the UI, the real 135M GGUF through llama.cpp where it is about running a model."""
import csv
import io
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("PySide6")

import time  # noqa: E402

from PySide6.QtCore import QSettings, QTimer  # noqa: E402
from PySide6.QtGui import QFont, QFontMetrics, QGuiApplication  # noqa: E402

from desktop.__main__ import SAMPLE_NOTE  # noqa: E402
from desktop.model_choice import ModelChoice, ModelChoiceError, discover, open_pipeline, runtime_spec  # noqa: E402
from desktop.review import Decision  # noqa: E402
from models.contract import parse_answer  # noqa: E402
from models.net import is_loopback  # noqa: E402

from .conftest import ROOT, run_module  # noqa: E402

SCREENSHOTS = ROOT / "artifacts" / "screenshots"


@pytest.fixture
def audit_log(tmp_path, monkeypatch):
    path = tmp_path / "audit.jsonl"
    monkeypatch.setenv("ICD10_CODER_AUDIT", str(path))
    return path


@pytest.fixture
def make_window(qtbot, tmp_path, audit_log):
    from desktop._qt.main_window import MainWindow

    def make(choice: ModelChoice | None = ModelChoice("retrieval"), load: bool = True):  # noqa: B008 - never mutated
        window = MainWindow(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat), choice)
        qtbot.addWidget(window)
        window.show()
        if load and choice is not None:
            with qtbot.waitSignal(window.model_ready, timeout=60_000):
                window.load_model()
        return window
    return make


def suggest_and_wait(qtbot, window, note: str, timeout=120_000):
    window.editor.setPlainText(note)
    assert window.suggest_action.isEnabled()
    window.suggest_action.trigger()
    qtbot.waitUntil(lambda: window.suggest_worker is None, timeout=timeout)


def test_paste_suggest_review_copy_and_audit(qtbot, make_window, audit_log):
    window = make_window()
    assert QFontMetrics(QFont()).inFont("A"), "no font: text would render as boxes"
    suggest_and_wait(qtbot, window, SAMPLE_NOTE)
    model = window.table_model
    codes = [model.index(r, 0).data() for r in range(model.rowCount())]
    assert "E11.9" in codes and "I10" in codes
    assert window.statusBar().currentMessage().startswith(f"{len(codes)} codes suggested in ")
    # Selecting a suggestion highlights its evidence in the note.
    row = codes.index("I10")
    window.table.selectRow(row)
    highlighted = [s.cursor.selectedText() for s in window.editor.extraSelections()]
    assert highlighted and "hypertension" in highlighted[0].lower()
    # Below the table, a code's flags in full (the Flags column may cut them short).
    flagged = next(i for i, item in enumerate(window.review.items) if item.suggestion.flags)
    window.table.selectRow(flagged)
    assert "Flags: more specific available" in window.detail.text()
    window.table.selectRow(row)
    # Accept with the keyboard, reject with the button.
    window.table.setFocus()
    qtbot.keyClick(window.table, "a")
    assert window.review.items[row].decision is Decision.ACCEPTED
    window.table.selectRow(codes.index("E11.9"))
    window.accept_button.click()
    others = [c for c in codes if c not in ("I10", "E11.9")]
    if others:
        window.table.selectRow(codes.index(others[0]))
        window.reject_button.click()
        assert window.review.items[codes.index(others[0])].decision is Decision.REJECTED
    accepted = sorted(i.suggestion.code for i in window.review.accepted)
    assert accepted == ["E11.9", "I10"]
    # Copy: one code per line, with its description.
    window.copy_action.trigger()
    lines = QGuiApplication.clipboard().text().splitlines()
    assert {line.split("\t")[0] for line in lines} == set(accepted)
    assert "Essential (primary) hypertension" in QGuiApplication.clipboard().text()
    record = json.loads(audit_log.read_text().splitlines()[-1])
    assert set(record["accepted"]) == set(accepted) and record["edition"].endswith("FY2026")
    assert "note" not in record and SAMPLE_NOTE[:40] not in audit_log.read_text()  # no PHI by default
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    window.table.selectRow(row)
    assert window.grab().save(str(SCREENSHOTS / "main-window-retrieval.png"))


def test_export_csv_and_json(qtbot, make_window, tmp_path):
    window = make_window()
    suggest_and_wait(qtbot, window, SAMPLE_NOTE)
    window.table.selectRow(0)
    window.accept_button.click()
    window.export_review(str(tmp_path / "codes.csv"))
    window.export_review(str(tmp_path / "codes.json"))
    rows = list(csv.DictReader(io.StringIO((tmp_path / "codes.csv").read_text())))
    assert rows[0]["decision"] == "accepted" and len(rows) == len(window.review.items)
    data = json.loads((tmp_path / "codes.json").read_text())
    assert data["codes"][0]["decision"] == "accepted" and "note" not in data


def test_lookup_adds_a_code_by_hand(qtbot, make_window):
    window = make_window()
    window.tabs.setCurrentIndex(1)
    window.lookup.search.setText("type 2 diabetes mellitus with diabetic chronic kidney disease")
    window.lookup.run_search()
    assert window.lookup.results.topLevelItem(0).text(0) == "E11.22"
    assert "Excludes1" in window.lookup.detail.toPlainText() or "Parents" in window.lookup.detail.toPlainText()
    window.lookup.add_button.click()
    assert [i.suggestion.code for i in window.review.accepted] == ["E11.22"]
    assert window.review.items[0].added_by_hand
    window.lookup.search.setText("E11")  # a category: browsable, not acceptable
    window.lookup.run_search()
    assert window.lookup.current == "E11" and not window.lookup.add_button.isEnabled()
    assert "E11.9" in window.lookup.detail.toPlainText()  # its children are listed


def test_open_a_note_file_as_the_menu_entry_does(qtbot, make_window, tmp_path):
    window = make_window()
    legacy = tmp_path / "note-cp1252.txt"
    legacy.write_bytes("Patient with essential hypertension, 37.5\xb0C.".encode("cp1252"))
    window.open_note(str(legacy))
    assert window.editor.toPlainText() == "Patient with essential hypertension, 37.5\xb0C."
    assert "Windows-1252" in window.statusBar().currentMessage()
    binary = tmp_path / "scan.pdf"
    binary.write_bytes(b"%PDF-1.7\x00\x00binary")
    window.open_note(str(binary))
    assert "binary file" in window.last_error
    assert window.editor.toPlainText().startswith("Patient with")  # nothing lost


def test_empty_note_cannot_be_sent_and_says_why(qtbot, make_window):
    window = make_window()
    window.editor.setPlainText("   \n ")
    assert not window.suggest_action.isEnabled()
    window.suggest()  # even if forced, the note check answers, nothing crashes
    qtbot.waitUntil(lambda: window.suggest_worker is None, timeout=10_000)
    assert "empty" in window.last_error.lower()


def test_huge_note_is_coded_in_chunks_with_progress(qtbot, make_window):
    window = make_window()
    note = (SAMPLE_NOTE + "\n\n") * (200_000 // (len(SAMPLE_NOTE) + 2))
    assert len(note) <= 200_000
    seen, ticks = [], []
    window.editor.setPlainText(note)
    timer = QTimer(interval=50)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    started = time.perf_counter()
    timer.start()
    window.suggest_action.trigger()
    window.suggest_worker.progress.connect(lambda done, total: seen.append((done, total)))
    qtbot.waitUntil(lambda: window.suggest_worker is None, timeout=240_000)
    timer.stop()
    elapsed = time.perf_counter() - started
    assert seen and seen[-1][0] == seen[-1][1] > 10
    # The UI thread kept running its event loop: no gap between timer ticks above half a second.
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert elapsed > 1 and len(ticks) > elapsed / 0.05 * 0.3 and max(gaps) < 0.5
    assert "I10" in [i.suggestion.code for i in window.review.items]


def test_bad_model_path_gives_a_message_not_a_crash(qtbot, make_window, tmp_path):
    window = make_window(ModelChoice("gguf", str(tmp_path / "missing.gguf")), load=False)
    window.load_model()
    assert "does not exist" in window.last_error and window.pipeline is None
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + b"\x00" * 100)
    window.last_error = ""
    window.load_model(ModelChoice("gguf", str(corrupt)))
    qtbot.waitUntil(lambda: bool(window.last_error), timeout=30_000)
    assert "corrupt" in window.last_error or "could not load" in window.last_error
    assert window.pipeline is None and not window.suggest_action.isEnabled()


def test_cancel_mid_run_on_the_real_model(qtbot, make_window):
    from builder.base_model import embedded_gguf

    window = make_window(ModelChoice("gguf", str(embedded_gguf())))
    window.editor.setPlainText(SAMPLE_NOTE)
    window.suggest_action.trigger()
    assert window.cancel_action.isEnabled()
    qtbot.wait(300)
    with qtbot.waitSignal(window.suggest_worker.cancelled, timeout=30_000):
        window.cancel_action.trigger()
    qtbot.waitUntil(lambda: window.suggest_worker is None, timeout=5_000)
    assert window.review is None and not window.editor.isReadOnly()
    # The model still works after a cancel.
    suggest_and_wait(qtbot, window, SAMPLE_NOTE)
    assert window.review is not None and window.review.result.runtime.startswith("llama.cpp")


def test_remote_servers_need_an_explicit_opt_in():
    assert is_loopback("http://127.0.0.1:1234/v1") and is_loopback("localhost:11434")
    assert not is_loopback("https://api.example.com/v1")
    with pytest.raises(ModelChoiceError, match="patient"):
        runtime_spec(ModelChoice("openai", "https://api.example.com/v1#m"))
    assert runtime_spec(ModelChoice("openai", "https://api.example.com/v1#m", allow_remote=True))
    assert runtime_spec(ModelChoice("openai", "http://127.0.0.1:1234/v1#m")).startswith("openai:")
    with pytest.raises(ModelChoiceError, match="Ollama server.*not on this computer"):
        runtime_spec(ModelChoice("ollama", "http://10.0.0.2:11434#icd10-coder:q4_k_m"))
    assert runtime_spec(ModelChoice("ollama", "icd10-coder:q4_k_m")) == "ollama:icd10-coder:q4_k_m"


def test_app_codes_through_a_local_ollama_model(qtbot, make_window, contract_tiny_gguf, tmp_path,
                                                monkeypatch):
    from builder.answer_check import CHECK_NOTES
    from builder.distribution.register import register_ollama
    from desktop._qt.settings_dialog import SettingsDialog

    from .fake_ollama import FakeOllama

    with FakeOllama(tmp_path / "blobs") as ollama:
        register_ollama(contract_tiny_gguf, host=ollama.url, check=False)
        monkeypatch.setenv("OLLAMA_HOST", ollama.url)
        dialog = SettingsDialog(ModelChoice("ollama", ""), False)
        qtbot.addWidget(dialog)
        dialog.kind.setCurrentIndex(dialog.kind.findData("ollama"))
        # Settings lists what the local Ollama has (once it answers); the remote opt-in is there, off.
        qtbot.waitUntil(lambda: dialog.value.count() > 0, timeout=10_000)
        assert [dialog.value.itemText(i) for i in range(dialog.value.count())] == ["icd10-coder:q4_k_m"]
        assert not dialog.allow_remote.isChecked()
        assert dialog.server_status.text() == f"Ollama at {ollama.url} offers 1 model(s)."
        dialog.show()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        dialog.grab().save(str(SCREENSHOTS / "settings-ollama.png"))
        window = make_window(dialog.choice(), load=False)
        window.load_model()
        qtbot.waitUntil(lambda: window.pipeline is not None or bool(window.last_error), timeout=60_000)
        assert window.pipeline is not None, window.last_error
        suggest_and_wait(qtbot, window, CHECK_NOTES[0])
        codes = [window.table_model.index(r, 0).data() for r in range(window.table_model.rowCount())]
        # The model answered I10; E11.9 the coding rules add, since the assessment states it.
        assert parse_answer(window.review.result.raw_answers[0]).codes == ["I10"]
        assert codes == ["I10", "E11.9"] and window.review.result.runtime.startswith("ollama:")
        assert ollama.chat_bodies and ollama.chat_bodies[-1]["messages"][1]["content"].count(CHECK_NOTES[0]) == 1


def test_built_models_are_found_through_bundles_and_run_with_their_retriever(tiny_bundle, tmp_path, cs):
    shutil.copytree(tiny_bundle.root, tmp_path / "run1" / "bundle")
    (tmp_path / "broken" / "bundle").mkdir(parents=True)
    (tmp_path / "broken/bundle/bundle.json").write_text("{not json")  # hides itself, not the rest
    found = discover([tmp_path])
    assert [m.path.name for m in found] == ["icd10-coder-Q4_K_M.gguf"]  # the merged model is not for the app
    assert found[0].bundle == (tmp_path / "run1/bundle").resolve()
    # A model of a bundle runs with that bundle's retriever, threshold included.
    meta = json.loads((tmp_path / "run1/bundle/bundle.json").read_text())
    meta["retriever"]["threshold"] = 0.91
    (tmp_path / "run1/bundle/bundle.json").write_text(json.dumps(meta))
    pipeline = open_pipeline(ModelChoice("gguf", str(found[0].path)))
    try:
        assert pipeline.retriever.threshold == 0.91
    finally:
        pipeline.selector.close()
    # A damaged bundle is refused with advice, not run.
    gguf = tmp_path / "run1/bundle/gguf/icd10-coder-Q4_K_M.gguf"
    gguf.write_bytes(gguf.read_bytes()[:-4] + b"XXXX")
    with pytest.raises(ModelChoiceError, match="damaged"):
        open_pipeline(ModelChoice("gguf", str(gguf)))


def test_self_test_runs_the_app_end_to_end(tmp_path):
    from builder.base_model import embedded_gguf

    proc = run_module("desktop", "--self-test", "--model", str(embedded_gguf()),
                      env={"QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path),
                           "ICD10_CODER_AUDIT": str(tmp_path / "audit.jsonl")}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "self-test: OK" in proc.stdout and "FY2026" in proc.stdout
    proc = run_module("desktop", "--self-test", "--model", str(tmp_path / "nope.gguf"),
                      env={"QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path)})
    assert proc.returncode == 1 and "does not exist" in proc.stderr


class SlowOllama:
    """A local HTTP server that answers as Ollama does (/api/version, /api/tags, /api/show and
    /api/chat; one model, whose answer codes I10), as slowly as a test needs: /api/version and
    /api/chat wait for their gate, /api/tags answers after `tags_delay` seconds."""

    MODEL = "icd10-coder:q4_k_m"

    def __init__(self, tags_delay: float = 0.0):
        self.version_gate, self.chat_gate = threading.Event(), threading.Event()
        self.version_gate.set()
        self.chat_gate.set()
        self.tags_delay = tags_delay
        self.tags_answered = threading.Event()
        self.chats = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.version_gate.set()
        self.chat_gate.set()
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def _send(self, lines: list[dict], content_type: str = "application/json") -> None:
                body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802
                if self.path == "/api/version":
                    server.version_gate.wait(60)
                    self._send([{"version": "0.6.5"}])
                elif self.path == "/api/tags":
                    time.sleep(server.tags_delay)
                    self._send([{"models": [{"name": server.MODEL, "model": server.MODEL}]}])
                    server.tags_answered.set()
                else:
                    self.send_error(404)

            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stamp = {"model": server.MODEL, "created_at": "2026-11-28T00:00:00Z"}
                if self.path == "/api/show":
                    self._send([{"modelfile": "", "parameters": "", "template": "", "details": {},
                                 "model_info": {}, "modified_at": stamp["created_at"]}])
                elif self.path == "/api/chat":
                    server.chats += 1
                    server.chat_gate.wait(60)
                    answer = {"role": "assistant", "content": '{"codes": ["I10"]}'}
                    self._send([{**stamp, "message": answer, "done": False},
                                {**stamp, "message": {"role": "assistant", "content": ""}, "done": True,
                                 "done_reason": "stop", "prompt_eval_count": 50, "eval_count": 8}],
                               "application/x-ndjson")
                else:
                    self.send_error(404)

        return Handler


def server_closed(pipeline) -> bool:
    """Whether a pipeline's model was closed: its Ollama client let go of its connections."""
    return pipeline.selector.runtime.client._client.is_closed


def test_the_model_asked_for_last_wins_and_a_stale_load_is_closed(qtbot, make_window):
    from models.pipeline import Pipeline

    with SlowOllama() as ollama:
        window = make_window(load=False)
        ollama.version_gate.clear()  # the first model asked for is slow to load
        window.load_model(ModelChoice("ollama", f"{ollama.url}#{SlowOllama.MODEL}"))
        stale = []
        window._loads[window._load_request].loaded.connect(
            lambda *args: stale.extend(a for a in args if isinstance(a, Pipeline)))
        # The user changes Settings while it loads: the model asked for last is the one kept,
        # even though the first one finishes loading after it.
        with qtbot.waitSignal(window.model_ready, timeout=60_000):
            window.load_model(ModelChoice("retrieval"))
        ollama.version_gate.set()
        qtbot.waitUntil(lambda: bool(stale) and server_closed(stale[0]), timeout=30_000)
        qtbot.wait(100)
        assert window.pipeline.selector.name == "retrieval"
        assert "retrieval" in window.model_label.text() and not window.last_error


def test_a_replaced_model_is_closed_once_the_run_using_it_ends(qtbot, make_window):
    with SlowOllama() as ollama:
        choice = ModelChoice("ollama", f"{ollama.url}#{SlowOllama.MODEL}")
        window = make_window(choice)
        first = window.pipeline
        ollama.chat_gate.clear()
        window.editor.setPlainText("Essential hypertension.")
        window.suggest_action.trigger()
        qtbot.waitUntil(lambda: ollama.chats == 1, timeout=30_000)  # the run waits on the server
        with qtbot.waitSignal(window.model_ready, timeout=60_000):
            window.load_model(ModelChoice("retrieval"))  # Settings changed mid-run
        assert not server_closed(first)  # the run still uses it
        ollama.chat_gate.set()
        qtbot.waitUntil(lambda: window.suggest_worker is None, timeout=30_000)
        assert server_closed(first)
        # The review is the run's: its codes, and the model that made them.
        assert [i.suggestion.code for i in window.review.items] == ["I10"]
        assert window.review.model == choice.label() and window.review.result.runtime.startswith("ollama:")
        assert window.pipeline.selector.name == "retrieval" and window.suggest_action.isEnabled()


def test_closing_the_window_closes_the_model_even_mid_run(qtbot, make_window):
    with SlowOllama() as ollama:
        window = make_window(ModelChoice("ollama", f"{ollama.url}#{SlowOllama.MODEL}"))
        pipeline = window.pipeline
        ollama.chat_gate.clear()
        window.editor.setPlainText("Essential hypertension.")
        window.suggest_action.trigger()
        qtbot.waitUntil(lambda: ollama.chats == 1, timeout=30_000)
        threading.Timer(0.5, ollama.chat_gate.set).start()  # the server answers as the window closes
        window.close()  # cancels the run, and closes the model once the run lets go of it
        assert server_closed(pipeline)


def test_settings_asks_the_server_for_its_models_off_the_ui_thread(qtbot, monkeypatch):
    from desktop._qt.settings_dialog import SettingsDialog

    with SlowOllama(tags_delay=2.0) as ollama:
        monkeypatch.setenv("OLLAMA_HOST", ollama.url)
        dialog = SettingsDialog(ModelChoice("retrieval"), False)
        qtbot.addWidget(dialog)
        dialog.show()
        started = time.perf_counter()
        dialog.kind.setCurrentIndex(dialog.kind.findData("ollama"))
        # Back to the event loop at once: the server takes 2 s (a blocking call took its whole
        # 0.5 s timeout, then said no Ollama answers).
        assert time.perf_counter() - started < 0.4
        assert dialog.server_status.text() == "Looking for models…" and dialog.value.count() == 0
        qtbot.waitUntil(lambda: dialog.value.count() == 1, timeout=20_000)
        assert dialog.value.currentText() == SlowOllama.MODEL  # proposed, as none was saved
        assert dialog.server_status.text() == f"Ollama at {ollama.url} offers 1 model(s)."


def test_settings_closed_before_the_server_answers(qtbot, qapp, monkeypatch):
    import threading

    from PySide6.QtCore import QThread

    from desktop._qt.settings_dialog import SettingsDialog

    def lookups():
        return [t for t in threading.enumerate() if t.name.startswith("server-models-")]

    with SlowOllama(tags_delay=1.0) as ollama:
        monkeypatch.setenv("OLLAMA_HOST", ollama.url)
        dialog = SettingsDialog(ModelChoice("ollama", ""), False)
        dialog.show()
        assert len(lookups()) == 1 and not qapp.findChildren(QThread)  # no Qt object off the UI thread
        dialog.reject()
        with qtbot.waitSignal(dialog.destroyed, timeout=5_000):
            dialog.deleteLater()
        # The answer comes when the dialog is gone: the look-up's thread ends, and nothing is
        # left to hand its answer to the dialog (pytest-qt fails the test on an exception in a
        # slot; under load, a QObject worker that reported to the gone dialog crashed).
        qtbot.waitUntil(ollama.tags_answered.is_set, timeout=20_000)
        qtbot.waitUntil(lambda: not lookups(), timeout=10_000)
        qtbot.wait(200)


def test_settings_says_why_a_bundle_runs_retrieval_alone_by_default(qtbot, tiny_bundle, tmp_path, monkeypatch):
    from desktop._qt.settings_dialog import SettingsDialog
    from desktop.model_choice import default_choice
    from models import bundle as bundle_mod

    run = tmp_path / "run1" / "bundle"
    shutil.copytree(tiny_bundle.root, run)
    monkeypatch.setattr(bundle_mod, "artifact_roots", lambda: [tmp_path])
    dialog = SettingsDialog(default_choice(), False)
    qtbot.addWidget(dialog)
    assert dialog.kind.currentData() == "gguf" and dialog.advice.isHidden()  # it runs its model
    meta = json.loads((run / "bundle.json").read_text())
    meta["default_system"] = "retrieval"
    meta["provenance"]["default_system"] = {"system": "retrieval",
                                            "why": "verifier Q4_K_M 0.5597, retrieval alone 0.5658"}
    (run / "bundle.json").write_text(json.dumps(meta))
    assert default_choice() == ModelChoice("retrieval", bundle=str(run.resolve()))
    dialog = SettingsDialog(default_choice(), False)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.kind.currentData() == "retrieval" and dialog.advice.isVisible()
    assert "retrieval alone by default" in dialog.advice.text() and "0.5658" in dialog.advice.text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    dialog.grab().save(str(SCREENSHOTS / "settings-retrieval-default.png"))
    dialog.kind.setCurrentIndex(dialog.kind.findData("gguf"))  # the model stays one click away
    assert dialog.value.currentText().endswith("icd10-coder-Q4_K_M.gguf") and dialog.advice.isVisible()
    dialog.kind.setCurrentIndex(dialog.kind.findData("ollama"))
    assert dialog.advice.isHidden()
    qtbot.waitUntil(lambda: dialog.server_status.text() != "Looking for models…", timeout=20_000)


def test_the_flags_name_the_codes_behind_an_added_code(cs):
    """A coder sees why a code they did not find in the note came in: the codes that ask for it
    (a drug therapy code) or that it reports (a combination code)."""
    from desktop._qt.suggestions_table import flag_text
    from desktop.review import ReviewItem
    from models.pipeline import Evidence, Flag, Suggestion

    z79 = Suggestion("Z79.84", cs.description("Z79.84"), 0.9, Evidence(0, 9, "metformin"),
                     flags=[Flag.ADDITIONAL], asked_by=["E11.65"])
    i129 = Suggestion("I12.9", cs.description("I12.9"), 0.8, None, flags=[Flag.COMBINATION],
                      combines=["I10", "N18.4"])
    assert flag_text(ReviewItem(z79)) == "additional code for E11.65"
    assert flag_text(ReviewItem(i129)) == "one code for I10 + N18.4"
