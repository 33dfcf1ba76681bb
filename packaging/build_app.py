"""Build the desktop app as a folder and a .tar.gz that run without Python (`make package`).

    python packaging/build_app.py                      # the newest coder bundle in artifacts/, its Q4_K_M
    python packaging/build_app.py --bundle DIR --model Q8_0   # another bundle, another of its GGUFs
    python packaging/build_app.py --no-model           # retrieval only: Settings asks for a model

Stages the code set (compiled here, so the app needs no code-set package) and a copy of the coder
bundle with one GGUF (its retriever, checksums and metrics kept), runs
PyInstaller on packaging/icd10-coder.spec, adds the menu entry, icon and install scripts, writes
dist/icd10-coder-<version>-linux-<arch>.tar.gz (with its sha256), then starts the built app with
--self-test and reports bundle size and start time in dist/package-report.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
HERE = ROOT / "packaging"
APP = "icd10-coder"  # the command, the bundle folder and its files
DIST = "offline-icd10cm-coder"  # the distribution (pyproject [project] name), for its version


def find_model(bundle_arg: str | None, model_arg: str | None):
    """(bundle, the path of its GGUF to package): the newest bundle in artifacts/ with a GGUF
    unless told otherwise; its default GGUF unless --model names another of its GGUFs. A --model
    file outside any bundle is packaged with the retriever the package ships."""
    from models.bundle import bundle_of, embedded

    if model_arg and Path(model_arg).is_file() and not bundle_arg and bundle_of(model_arg) is None:
        return embedded(), Path(model_arg).resolve()
    from builder.distribution.register import bundle_gguf
    from models.bundle import find, resolve
    from models.errors import CoderError

    try:
        bundle = resolve(bundle_arg) if bundle_arg else next(
            (resolve(b.root) for b in find([ROOT / "artifacts"]) if any(m.format == "gguf" for m in b.models)),
            None)
        if bundle is None:
            raise SystemExit("error: no coder bundle with a GGUF in artifacts/: run `make all` first, "
                             "or pass --bundle DIR, or --no-model to leave the model out.")
        return bundle, bundle_gguf(bundle, model_arg)
    except CoderError as exc:
        raise SystemExit(f"error: {exc}") from exc


def stage(stage_dir: Path, bundle, model: Path | None) -> None:
    from builder.stages.bundle import slim_copy, with_gguf
    from models import codeset

    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True)
    shutil.copyfile(codeset.ensure_compiled(), stage_dir / "codeset.sqlite")
    if model is not None:
        # The app finds bundles under artifacts/ (models/bundle.py); this one carries one GGUF.
        dest = stage_dir / "artifacts" / "bundled"
        if model.resolve().is_relative_to(bundle.root.resolve()):
            slim_copy(bundle, dest, [str(model.resolve().relative_to(bundle.root.resolve()))])
        else:
            with_gguf(bundle, dest, model)


def render_icon(svg: Path, png: Path, size: int = 256) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([])  # noqa: F841 - Qt needs one
    image = QImage(size, size, QImage.Format_ARGB32)
    image.fill(Qt.transparent)
    painter = QPainter(image)
    QSvgRenderer(str(svg)).render(painter)
    painter.end()
    image.save(str(png))


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def make_archive(folder: Path, archive: Path) -> str:
    from models.files import atomic_path, sha256_file, write_text_atomic

    with atomic_path(archive) as tmp, tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        tar.add(folder, arcname=folder.name)
    digest = sha256_file(archive)
    write_text_atomic(archive.with_name(archive.name + ".sha256"), f"{digest}  {archive.name}\n")
    return digest


def self_test(binary: Path, home: Path) -> dict:
    """Start the built app as a coder would (empty settings), timed."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(home),
           "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".local/share"),
           "XDG_CACHE_HOME": str(home / ".cache")}
    env.pop("ICD10_CODER_ARTIFACTS", None)
    started = time.perf_counter()
    proc = subprocess.run([str(binary), "--self-test"], env=env, capture_output=True, text=True,
                          timeout=600)
    return {"returncode": proc.returncode, "seconds": round(time.perf_counter() - started, 2),
            "output": (proc.stdout + proc.stderr).strip()[-2000:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", help="the coder bundle to package (default: the newest in artifacts/)")
    parser.add_argument("--model", help="which of its GGUFs (file name or type, e.g. Q8_0; default its default)")
    parser.add_argument("--no-model", action="store_true", help="bundle no model")
    parser.add_argument("--dist", default=str(ROOT / "dist"), help="output folder (default dist/)")
    parser.add_argument("--work", default=str(ROOT / "build" / "package"), help="build folder")
    parser.add_argument("--skip-self-test", action="store_true")
    args = parser.parse_args(argv)

    from importlib.metadata import version

    started = time.perf_counter()
    bundle, model = (None, None) if args.no_model else find_model(args.bundle, args.model)
    if model is not None:
        from models.runtimes import RuntimeUnavailable
        from models.runtimes.llamacpp_runtime import check_gguf

        try:
            check_gguf(model)
        except RuntimeUnavailable as exc:
            raise SystemExit(f"error: {exc}") from exc
    dist, work = Path(args.dist).resolve(), Path(args.work).resolve()
    stage(work / "stage", bundle, model)
    env = {**os.environ, "ICD10_CODER_STAGE": str(work / "stage")}
    print(f"PyInstaller: bundling the app{f' with {model.name}' if model else ' (no model)'}...", flush=True)
    proc = subprocess.run([sys.executable, "-m", "PyInstaller", str(HERE / f"{APP}.spec"),
                           "--noconfirm", "--log-level", "WARN", "--distpath", str(dist),
                           "--workpath", str(work / "pyinstaller")], env=env, cwd=ROOT)
    if proc.returncode != 0:
        print("error: PyInstaller failed (see above).", file=sys.stderr)
        return 1
    folder = dist / APP
    for name in ("install.sh", "uninstall.sh", f"{APP}.desktop"):
        shutil.copy2(HERE / name, folder / name)
    render_icon(HERE / f"{APP}.svg", folder / f"{APP}.png")
    build_seconds = time.perf_counter() - started

    report = {"version": version(DIST), "model": model.name if model else None,
              "build_seconds": round(build_seconds, 1), "folder": str(folder),
              "folder_mb": round(folder_bytes(folder) / 1e6, 1)}
    if not args.skip_self_test:
        report["self_test"] = self_test(folder / APP, work / "home")
    arch = platform.machine()
    archive = dist / f"{APP}-{report['version']}-linux-{arch}.tar.gz"
    report["archive"] = str(archive)
    report["archive_sha256"] = make_archive(folder, archive)
    report["archive_mb"] = round(archive.stat().st_size / 1e6, 1)
    (dist / "package-report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    if not args.skip_self_test and report["self_test"]["returncode"] != 0:
        print("error: the built app failed its self-test (above).", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
