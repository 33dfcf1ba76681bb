"""Which model the app runs, without Qt: the coder bundles found on this computer and their
models, the privacy rule for servers, and the pipeline a choice opens.

Every choice runs over a coder bundle (models/bundle.py): its retriever proposes the candidates.
A model of a bundle runs with that bundle's retriever; a server model or a GGUF from elsewhere
with the chosen bundle's, else the newest found, else the retrieval-only bundle the package ships.

Privacy by default: local files, and servers on this machine (loopback). A server elsewhere is
refused unless the user turned on `allow_remote` knowingly: notes may contain PHI.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models import bundle as bundle_mod
from models.bundle import Bundle, BundleError
from models.errors import CoderError
from models.net import RemoteNotAllowed, check_destination, ollama_url
from models.runtimes import destination

KINDS = ("gguf", "onnx", "ollama", "openai", "retrieval")


class ModelChoiceError(CoderError, ValueError):
    """The choice cannot be used; the message says what to do."""


@dataclass
class ModelChoice:
    kind: str = "gguf"
    value: str = ""  # a .gguf path, an ONNX folder, an Ollama model name, or a server URL#model
    allow_remote: bool = False
    bundle: str = ""  # the coder bundle whose retriever runs; "" = the model's own, else the newest

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
    run: str  # the bundle's name
    built_at: str
    bundle: Path


def discover(roots: list[Path] | None = None) -> list[FoundModel]:
    """The GGUF and ONNX models of the coder bundles found (models.bundle.find), newest bundle
    first, its default model first. Only what a bundle lists and what exists on disk."""
    found = []
    for b in bundle_mod.find(roots):
        for m in sorted(b.models, key=lambda m: not m.default):
            if m.format in ("gguf", "onnx") and b.path(m.path).exists():
                found.append(FoundModel(b.path(m.path).resolve(), m.format, b.name, b.created_at,
                                        b.root.resolve()))
    return found


def _newest_in(roots: list[Path] | None) -> Bundle | None:
    """The newest bundle with a GGUF or ONNX model (see `discover`)."""
    models = discover(roots)
    return bundle_mod.read(models[0].bundle) if models else None


def bundle_default(found: Bundle) -> ModelChoice:
    """What a bundle runs by default, as the app's choice: the bundle decides
    (`Bundle.runtime_spec`), retrieval where that is not a GGUF or ONNX model of its own."""
    spec = found.runtime_spec()
    model = None if spec == "retrieval" else found.model_for_path(spec)
    root = str(found.root.resolve())
    if model is None or model.format not in ("gguf", "onnx"):
        return ModelChoice("retrieval", bundle=root)
    return ModelChoice(model.format, str(Path(spec).resolve()), bundle=root)


def default_choice(roots: list[Path] | None = None) -> ModelChoice | None:
    """What the newest bundle with a model runs by default: its default model, or its retriever
    alone where the bundle says the model did not beat it (`Bundle.default_system`). None: no
    model built yet."""
    found = _newest_in(roots)
    return bundle_default(found) if found else None


def default_advice(roots: list[Path] | None = None) -> str:
    """Why the newest bundle with a model runs retrieval alone by default ("" when it runs its
    model): Settings shows it beside the choice, so a coder picking the model knows."""
    found = _newest_in(roots)
    if found is None or found.default_system != "retrieval":
        return ""
    why = found.provenance.get("default_system", {}).get("why", "")
    return (f"The bundle {found.name} runs retrieval alone by default: its model did not beat it on "
            f"notes it never saw{f' ({why})' if why else ''}. Its models stay selectable here.")


def choose_bundle(choice: ModelChoice, cs) -> Bundle:
    """The bundle a choice runs over (checksums verified): the one named, the one holding the
    model, the newest found, or the package's retrieval-only bundle."""
    try:
        if choice.bundle:
            return bundle_mod.load(choice.bundle, cs)
        if choice.kind in ("gguf", "onnx") and (own := bundle_mod.bundle_of(choice.value)):
            return bundle_mod.load(own, cs)
        found = bundle_mod.find()
        return bundle_mod.load(found[0].root, cs) if found else bundle_mod.embedded()
    except BundleError as exc:
        raise ModelChoiceError(str(exc)) from exc


def open_pipeline(choice: ModelChoice):
    """The pipeline for a choice: its bundle's retriever, its model. Slow (loads the model)."""
    from models import codeset
    from models.pipeline import Pipeline

    spec = runtime_spec(choice)
    cs = codeset.load()
    return Pipeline.from_bundle(choose_bundle(choice, cs), spec, cs,
                                runtime_options={"allow_remote": choice.allow_remote})


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
    from models.runtimes import RuntimeUnavailable, ollama_runtime, openai_runtime

    try:
        if kind == "ollama":
            url = ollama_url()
            return url, ollama_runtime.list_models(url, timeout=timeout)
        url = DEFAULT_LMSTUDIO_URL
        return url, [f"{url}#{m}" for m in openai_runtime.list_models(url, timeout=timeout)]
    except RuntimeUnavailable:
        return url, None
