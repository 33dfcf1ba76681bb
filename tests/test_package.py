"""`make package`: the PyInstaller bundle starts without Python, loads its bundled model and codes
the sample note (its own --self-test), with no torch inside."""
import json
import sys
import tarfile

import pytest

from .conftest import ROOT

pytest.importorskip("PyInstaller")


@pytest.mark.slow
def test_the_packaged_app_passes_its_self_test(tmp_path):
    import subprocess

    from builder.base_model import embedded_gguf

    dist = tmp_path / "dist"
    proc = subprocess.run([sys.executable, "packaging/build_app.py", "--model", str(embedded_gguf()),
                           "--dist", str(dist), "--work", str(tmp_path / "work")],
                          cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    report = json.loads((dist / "package-report.json").read_text())
    assert report["self_test"]["returncode"] == 0
    assert "self-test: OK" in report["self_test"]["output"]
    folder = dist / "icd10-coder"
    internal = folder / "_internal"
    assert (internal / "llama_cpp" / "lib").is_dir()  # the ctypes-loaded native libraries
    assert (internal / "codeset.sqlite").is_file()
    assert (internal / "artifacts/bundled/gguf" / embedded_gguf().name).is_file()
    assert not (internal / "torch").exists() and not (internal / "transformers").exists()
    for name in ("icd10-coder.desktop", "icd10-coder.png", "install.sh", "uninstall.sh"):
        assert (folder / name).is_file()
    with tarfile.open(report["archive"]) as tar:
        assert "icd10-coder/icd10-coder" in tar.getnames()
    # The menu entry install puts in place points at this folder's binary.
    home = tmp_path / "home"
    subprocess.run(["sh", str(folder / "install.sh")], check=True,
                   env={"HOME": str(home), "PATH": "/usr/bin:/bin"})
    entry = (home / ".local/share/applications/icd10-coder.desktop").read_text()
    assert f"Exec={folder}/icd10-coder %f" in entry
