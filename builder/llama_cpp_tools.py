"""llama.cpp's own HF -> GGUF converter, from the pinned llama-cpp-python sdist.

The installed llama-cpp-python wheel has the runtime library but not `convert_hf_to_gguf.py`; the
sdist of the same version carries it (with `gguf-py/` and `conversion/`) at the same llama.cpp
commit as the runtime, so the files it writes are ones our runtime reads. `make setup` fetches it
once from PyPI (a package registry, not a model hub), checks its sha256 and keeps only the converter
in the cache. `python -m builder.llama_cpp_tools` does the same by hand.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tarfile
import tempfile
from pathlib import Path

from models.errors import CoderError
from models.files import atomic_dir, cache_dir

LLAMA_CPP_PYTHON_VERSION = "0.3.36"  # keep equal to the pin in pyproject.toml
SDIST_URL = ("https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6"
             "521aae45ca773a59fe7cf3/llama_cpp_python-0.3.36.tar.gz")
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
_KEEP = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")


class ConverterUnavailable(CoderError, RuntimeError):
    pass


def converter_dir() -> Path:
    return cache_dir() / f"llama.cpp-convert-{LLAMA_CPP_PYTHON_VERSION}"


def ensure_converter(download: bool = True) -> Path:
    """The folder holding convert_hf_to_gguf.py; fetched and unpacked on first use."""
    target = converter_dir()
    if (target / "convert_hf_to_gguf.py").exists():
        return target
    if not download:
        raise ConverterUnavailable(f"llama.cpp's converter is not in {target}: run `make setup` "
                                   "(or `python -m builder.llama_cpp_tools`) once with network.")
    import httpx

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        sdist = Path(tmp) / "sdist.tar.gz"
        digest = hashlib.sha256()
        try:
            with httpx.stream("GET", SDIST_URL, follow_redirects=True, timeout=120) as resp:
                resp.raise_for_status()
                with open(sdist, "wb") as fh:
                    for block in resp.iter_bytes(1 << 20):
                        fh.write(block)
                        digest.update(block)
        except httpx.HTTPError as exc:
            raise ConverterUnavailable(
                f"Could not download llama-cpp-python {LLAMA_CPP_PYTHON_VERSION}'s source from "
                f"PyPI ({exc}). Run `make setup` on a machine with access to PyPI, or copy "
                f"{target} from one.") from exc
        if digest.hexdigest() != SDIST_SHA256:
            raise ConverterUnavailable(f"The downloaded sdist has sha256 {digest.hexdigest()}, "
                                       f"expected {SDIST_SHA256}: refusing to use it.")
        prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp/"
        with atomic_dir(target) as staging, tarfile.open(sdist) as tar:
            members = []
            for m in tar.getmembers():
                if m.name.startswith(prefix) and m.name[len(prefix):].startswith(_KEEP) and (m.isfile() or m.isdir()):
                    m.name = m.name[len(prefix):]
                    members.append(m)
            tar.extractall(staging, members=members, filter="data")
            if not (staging / "convert_hf_to_gguf.py").exists():
                raise ConverterUnavailable("The sdist has no vendor/llama.cpp/convert_hf_to_gguf.py.")
    return target


def converter_env(folder: Path) -> dict:
    """Environment for the converter: its own gguf-py first, so writer and runtime agree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(folder / "gguf-py"), str(folder),
                                         env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("NO_LOCAL_GGUF", None)  # its presence would skip the bundled gguf-py
    return env


if __name__ == "__main__":
    try:
        print(ensure_converter())
    except ConverterUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
