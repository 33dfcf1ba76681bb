"""Which model the app runs, without Qt: discovery of built models, the privacy rule for servers,
and the spec handed to `models.runtimes.open_runtime`.

Privacy by default: local files, and servers on this machine (loopback). A server elsewhere is
refused unless the user turned on `allow_remote` knowingly: notes may contain PHI.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from models.net import RemoteNotAllowed, check_destination, ollama_url
from models.runtimes import destination

KINDS = ("gguf", "onnx", "ollama", "openai", "retrieval")
REPO_ROOT = Path(__file__).resolve().parents[1]


class ModelChoiceError(ValueError):
    """The choice cannot be used; the message says what to do."""


@dataclass
class ModelChoice:
    kind: str = "gguf"
    value: str = ""  # a .gguf path, an ONNX folder, an Ollama model name, or a server URL#model
    allow_remote: bool = False

    def label(self) -> str:
        if self.kind == "retrieval":
            return "retrieval only (no language model)"
        if self.kind in ("gguf", "onnx"):
            return f"{Path(self.value).name} ({self.kind.upper()}, local)"
        return f"{self.value} ({'Ollama' if self.kind == 'ollama' else 'OpenAI-compatible server'})"


@dataclass(frozen=True)
class FoundModel:
    path: Path
    kind: str  # gguf | onnx
    run: str
    built_at: str


def artifact_roots() -> list[Path]:
    roots = [Path(p) for p in os.environ.get("ICD10_CODER_ARTIFACTS", "").split(os.pathsep) if p]
    return roots + [REPO_ROOT / "artifacts", Path.cwd() / "artifacts"]


def discover(roots: list[Path] | None = None) -> list[FoundModel]:
    """GGUF files and ONNX folders recorded by `builder export` in run manifests, newest first.
    Only what the manifest lists and what still exists on disk."""
    found: dict[Path, FoundModel] = {}
    for root in roots or artifact_roots():
        for manifest in sorted(Path(root).glob("*/manifest.json")) if Path(root).is_dir() else []:
            try:
                stage = json.loads(manifest.read_text())["stages"].get("export")
            except (OSError, ValueError, KeyError, AttributeError):
                continue  # a broken manifest hides that run, never the app
            if not stage:
                continue
            run_dir = manifest.parent
            for rel in stage.get("outputs", {}):
                path = (run_dir / rel).resolve()
                if rel.endswith(".gguf") and path.is_file():
                    found[path] = FoundModel(path, "gguf", run_dir.name, stage.get("finished_at", ""))
                elif rel.endswith("model.onnx") and path.is_file():
                    found[path.parent] = FoundModel(path.parent, "onnx", run_dir.name,
                                                    stage.get("finished_at", ""))
    return sorted(found.values(), key=lambda m: (m.built_at, _preference(m)), reverse=True)


def _preference(model: FoundModel) -> int:
    # Among one run's exports, the app's default is the Q4_K_M GGUF.
    name = model.path.name
    return 3 if "Q4_K_M" in name else 2 if model.kind == "gguf" else 1


def default_choice(roots: list[Path] | None = None) -> ModelChoice | None:
    models = discover(roots)
    return ModelChoice(models[0].kind, str(models[0].path)) if models else None


def runtime_spec(choice: ModelChoice) -> str:
    """The `open_runtime` spec for a choice, after the privacy check."""
    if choice.kind not in KINDS:
        raise ModelChoiceError(f"Unknown model kind {choice.kind!r}.")
    if choice.kind == "retrieval":
        return "retrieval"
    if not choice.value.strip():
        raise ModelChoiceError("No model chosen: open Settings and pick a model.")
    if choice.kind in ("gguf", "onnx"):
        path = Path(choice.value).expanduser()
        if not path.exists():
            raise ModelChoiceError(f"{path} does not exist. Build a model with `make all`, or pick "
                                   "another one in Settings.")
        return str(path)
    spec = f"{choice.kind}:{choice.value}"
    try:
        check_destination(destination(spec), choice.allow_remote,
                          "The Ollama server" if choice.kind == "ollama" else "The server")
    except RemoteNotAllowed as exc:
        raise ModelChoiceError(str(exc)) from exc
    return spec


def server_models(kind: str, timeout: float = 0.5) -> tuple[str, list[str] | None]:
    """(server URL, the models it offers now as Settings values), None when nothing answers
    there: the local Ollama, or LM Studio's default port. Short timeout: Settings opens at once."""
    from models.net import DEFAULT_LMSTUDIO_URL
    from models.runtimes import RuntimeUnavailable
    from models.runtimes import ollama_runtime, openai_runtime

    try:
        if kind == "ollama":
            url = ollama_url()
            return url, ollama_runtime.list_models(url, timeout=timeout)
        url = DEFAULT_LMSTUDIO_URL
        return url, [f"{url}#{m}" for m in openai_runtime.list_models(url, timeout=timeout)]
    except RuntimeUnavailable:
        return url, None
