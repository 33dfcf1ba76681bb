"""The app in a real X11 window: Xvfb, Qt's xcb platform plugin, real mouse clicks (xdotool).
Every other desktop test runs offscreen, which needs none of the xcb libraries; this one fails when
`make system-deps` (QT_APT) misses one, as a coder's bare Debian desktop would."""
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from PySide6.QtGui import QImage  # noqa: E402

from desktop.__main__ import SAMPLE_NOTE  # noqa: E402

from .conftest import ROOT  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("Xvfb") is None,
                                reason="no Xvfb: `make system-deps` (as root) installs it")

SCREEN = (1400, 900)
TITLE = "ICD-10-CM Coder"
# A screenshot of the whole X display, taken by a second Qt client (XGetImage on the root window).
GRAB = ("import sys; from PySide6.QtGui import QGuiApplication; app = QGuiApplication(sys.argv[:1]); "
        "sys.exit(0 if app.primaryScreen().grabWindow(0).save(sys.argv[1]) else 1)")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def display(tmp_path):
    """An Xvfb server on a display number it picks itself (-displayfd: never one in use), and the
    environment of a client of it: a fresh HOME and XDG folders, so no user setting is touched."""
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24",
                             "-nolisten", "tcp"], pass_fds=(write_fd,), stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "xvfb.log", "w"))
    os.close(write_fd)
    try:
        number = b""
        while not number.endswith(b"\n"):
            ready, _, _ = select.select([read_fd], [], [], 60)
            chunk = os.read(read_fd, 16) if ready else b""
            assert chunk, f"Xvfb did not start: {(tmp_path / 'xvfb.log').read_text()[-2000:]}"
            number += chunk
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QT_", "XDG_", "WAYLAND"))}
        env.update(DISPLAY=f":{number.decode().strip()}", QT_QPA_PLATFORM="xcb", HOME=str(tmp_path / "home"),
                   XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"),
                   XDG_CACHE_HOME=str(tmp_path / "cache"), XDG_RUNTIME_DIR=str(tmp_path / "runtime"),
                   ICD10_CODER_AUDIT=str(tmp_path / "audit.jsonl"))
        (tmp_path / "runtime").mkdir(mode=0o700)
        (tmp_path / "home").mkdir()
        yield env
    finally:
        os.close(read_fd)
        stop(xvfb)


def x(env, *args) -> str:
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    return proc.stdout


def grab(env, path: Path) -> QImage:
    """The X display now, as 8-bit grey (text is dark, backgrounds light)."""
    proc = subprocess.run([sys.executable, "-c", GRAB, str(path)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return QImage(str(path)).convertToFormat(QImage.Format_Grayscale8)


def pixels(img: QImage, left: int, top: int, right: int, bottom: int) -> list[bytes]:
    data, stride = bytes(img.constBits()), img.bytesPerLine()
    return [data[y * stride + left:y * stride + right] for y in range(top, bottom)]


def toolbar_buttons(img: QImage, win: dict) -> list[tuple[int, int, int]]:
    """The toolbar's buttons, left to right, as (first x, last x, darkest grey) of their text:
    columns with ink in the toolbar's band, split where the gap is wider than a word space."""
    rows = pixels(img, win["X"], win["Y"] + 3, win["X"] + win["WIDTH"], win["Y"] + 24)
    ink = [min(row[i] for row in rows) for i in range(win["WIDTH"])]
    buttons, start, gap = [], None, 0
    for i, value in enumerate(ink + [255] * 12):
        if value < 215:  # text, enabled (black) or disabled (grey), on the toolbar's light grey
            start, gap = (i if start is None else start), 0
        elif start is not None:
            gap += 1
            if gap > 9:
                end = i - gap
                buttons.append((win["X"] + start, win["X"] + end, min(ink[start:end + 1])))
                start, gap = None, 0
    return buttons


def table_ink(img: QImage, win: dict) -> int:
    """Dark pixels in the suggestions table (right pane, below its header): 0 while it is empty."""
    w, h = win["WIDTH"], win["HEIGHT"]
    rows = pixels(img, win["X"] + int(w * 0.45), win["Y"] + 90, win["X"] + int(w * 0.95), win["Y"] + int(h * 0.6))
    return sum(sum(1 for v in row if v < 128) for row in rows)


def test_app_in_a_real_x11_window_suggests_codes_on_a_click(display, tmp_path):
    env = display
    note = tmp_path / "note.txt"
    note.write_text(SAMPLE_NOTE)
    log = tmp_path / "app.log"
    app = subprocess.Popen([sys.executable, "-m", "desktop", "--model", "retrieval", str(note)], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=open(log, "w"))

    def wait_for(what: str, check, timeout: float = 180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert app.poll() is None, f"the app exited ({app.returncode}):\n{log.read_text()[-3000:]}"
            result = check()
            if result:
                return result
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")

    def click(xy):  # then away, out of the window: a hovered button draws a frame
        x(env, "xdotool", "mousemove", "--sync", str(xy[0]), str(xy[1]), "click", "1",
          "mousemove", "--sync", str(SCREEN[0] - 2), str(SCREEN[1] - 2))

    try:
        # The window maps on the xcb platform (no plugin missing), with the note opened from the command line.
        wid = wait_for("the window",
                       lambda: x(env, "xdotool", "search", "--onlyvisible", "--name", f"^{TITLE}$").split())
        win = {k: int(v) for k, v in (line.split("=") for line in
                                      x(env, "xdotool", "getwindowgeometry", "--shell", wid[0]).split())
               if k in ("X", "Y", "WIDTH", "HEIGHT")}
        assert win["WIDTH"] > 800 and win["HEIGHT"] > 500, win
        shot = tmp_path / "shot.png"

        # "Suggest codes" is the toolbar's second button; its text turns black once the model is loaded.
        def suggest_enabled():
            buttons = toolbar_buttons(grab(env, shot), win)
            return len(buttons) >= 5 and buttons[1][2] < 110 and buttons[1]
        first, last, _ = wait_for("Suggest codes to be enabled", suggest_enabled)
        button = ((first + last) // 2, win["Y"] + 14)
        assert table_ink(grab(env, shot), win) == 0  # no suggestion yet
        click(button)
        # The table fills, and the button is enabled again when the run is over.
        wait_for("the suggestions in the table", lambda: table_ink(grab(env, shot), win) > 500 and suggest_enabled())
        screenshot = ROOT / "artifacts" / "screenshots" / "main-window-xcb.png"
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, screenshot)
        img = QImage(str(shot))
        assert (img.width(), img.height()) == SCREEN and shot.stat().st_size > 20_000
        assert len({img.pixel(px, py) for px in range(0, SCREEN[0], 7) for py in range(0, SCREEN[1], 7)}) > 20

        # A second click starts a new review, which files the first one in the audit log: it holds
        # what the window showed.
        click(button)
        audit = Path(env["ICD10_CODER_AUDIT"])
        record = json.loads(wait_for("the audit record", lambda: audit.is_file() and audit.read_text()
                                     ).splitlines()[0])
        assert {"E11.9", "I10"} <= set(record["suggested"]), record
        assert record["model"].startswith("retrieval") and record["note_chars"] == len(SAMPLE_NOTE)
        assert app.poll() is None, log.read_text()[-3000:]
    finally:
        stop(app)
