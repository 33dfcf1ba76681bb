"""The run manifest: what each stage read, wrote (with sha256) and how long it took."""
from __future__ import annotations

import fcntl
import json
import platform
import sys
import time
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from models.files import sha256_file, write_json_atomic

_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes",
             "gguf", "onnxruntime", "llama-cpp-python", "simple-icd-10-cm")


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def read(run_dir: str | Path) -> dict:
    """The run's manifest ({"stages": {}} when there is none yet)."""
    path = Path(run_dir) / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {"stages": {}}


@contextmanager
def run_lock(run_dir: Path):
    """Exclusive hold on the run's manifest and bundle.json across processes (parallel
    evaluations of one run, a bundle rebuilt meanwhile). The lock is a separate file because
    manifest.json itself is replaced by a rename on each write, and a lock on a replaced file
    guards nothing."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(run_dir) / "manifest.json.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, even on a crash
        yield


def record_stage(run_dir: Path, stage: str, config: dict, inputs: dict, outputs: list[Path],
                 seconds: float, extra: dict | None = None) -> dict:
    """Add (or replace) one stage's entry in run_dir/manifest.json, atomically; stages recorded
    at the same time by other processes are kept."""
    entry = {
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(seconds, 2),
        "config": config,
        "inputs": inputs,
        "versions": package_versions(),
        "outputs": {
            str(p.relative_to(run_dir)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in outputs
        },
        **(extra or {}),
    }
    with run_lock(run_dir):  # read-modify-write: nobody may write between the two
        manifest = read(run_dir)
        manifest["stages"][stage] = entry
        write_json_atomic(Path(run_dir) / "manifest.json", manifest)
    return entry
