import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def cs():
    from models import codeset

    return codeset.load()


@pytest.fixture(scope="session")
def embedded_codiesp():
    from builder.data.codiesp import embedded_dir

    return embedded_dir()


@pytest.fixture
def small_codiesp(tmp_path, embedded_codiesp):
    """A CodiEsp-layout copy with a few real cases per split (fast end-to-end runs)."""
    out = tmp_path / "codiesp"
    for split, n in (("train", 6), ("dev", 3)):
        src = embedded_codiesp / split
        (out / split / "text_files_en").mkdir(parents=True)
        ids = sorted(p.stem for p in (src / "text_files_en").glob("*.txt"))[:n]
        for case_id in ids:
            shutil.copy(src / "text_files_en" / f"{case_id}.txt", out / split / "text_files_en")
        rows = [line for line in (src / f"{split}D.tsv").read_text().splitlines()
                if line.split("\t")[0] in ids]
        (out / split / f"{split}D.tsv").write_text("\n".join(rows) + "\n")
    return out


def run_module(*args, env=None, timeout=600):
    import subprocess

    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
