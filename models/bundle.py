"""The coder bundle: one versioned folder holding everything a suggestion depends on.

    <bundle>/bundle.json       what is here, what made it, what it scored, sha256 of every file
    <bundle>/retriever.json.gz the fitted candidate ranker (neighbour index, priors, weights)
    <bundle>/gguf/*.gguf       models, each with the runtime that runs it
    <bundle>/onnx/{fp32,int8}/
    <bundle>/merged/           (the full-precision model, for transformers and publishing)

`builder bundle` writes it; the app, `builder serve`, `register`, `publish`, `evaluate` and
`make package` read it through `load` here, and nothing else reads a run's layout by hand. A
model is trained on its retriever's candidates, so the two travel together. `default_system` says
what the app runs unless told otherwise: the default model, or the retriever alone where the model
did not beat it on notes it never saw (`builder bundle` decides, provenance says why). A bundle of
another format or contract version, or for another code-set edition, is refused with a message;
every file's sha256 is checked on load.

The package ships a retrieval-only bundle (`embedded()`): the ranker fitted on CodiEsp train,
no language model. It is what runs before anything is built.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path, PureWindowsPath

from .contract import CONTRACT_VERSION, VERIFIER_CONTRACT
from .errors import CoderError
from .files import sha256_file
from .runtimes import cpu_has_amx_bf16, cpu_has_native_bf16, torch_installed

BUNDLE_FORMAT = 1
BUNDLE_FILE = "bundle.json"
RUN_BUNDLE = "bundle"  # a run folder keeps its bundle here
RETRIEVER_FILE = "retriever.json.gz"
DEFAULT_SYSTEMS = ("model", "retrieval")  # Bundle.default_system
# How each model format runs (models/runtimes picks the class from the path).
RUNTIMES = {"gguf": "llama.cpp", "onnx": "onnxruntime", "safetensors": "transformers"}


class BundleError(CoderError):
    """The bundle cannot be used; the message says what to do."""


@dataclass(frozen=True)
class BundleModel:
    path: str  # relative to the bundle: gguf/NAME.gguf, onnx/int8, merged
    format: str  # gguf | onnx | safetensors
    variant: str  # Q4_K_M, Q8_0, ... | fp32, int8 | fp32
    runtime: str  # llama.cpp | onnxruntime | transformers
    default: bool = False  # the one the app runs unless told otherwise


@dataclass(frozen=True)
class RetrieverPart:
    path: str
    threshold: float  # ranker probability a code needs when retrieval alone selects
    fitted_on: str  # e.g. "codiesp train (500 cases)"
    tuned_on: str  # what chose the threshold and regularisation, e.g. "codiesp dev (250 cases)"


@dataclass(frozen=True)
class VerifierPart:
    """The bundle's models are a verifier (they judge the retriever's candidates, models/select.py
    `VerifierSelector`): the verifier-input version they were trained for, and the stacker."""

    contract: int
    stacker: dict  # models.select.Stacker fields, fitted on the full-precision margins
    fitted_on: str  # what trained it, e.g. "codiesp train (400 cases)"
    tuned_on: str  # what fitted the stacker and chose its threshold
    # A model's own stacker, by its path in the bundle: refitted on that file's margins (a
    # quantized GGUF shifts them), on the same held-out cases.
    stackers: dict = field(default_factory=dict)


@dataclass
class Bundle:
    root: Path
    name: str
    created_at: str
    contract_version: int
    codeset: dict  # edition, source_version, sha256 (CodeSet.content_sha256)
    retriever: RetrieverPart
    models: list[BundleModel] = field(default_factory=list)
    # What data fitted, tuned and reported each part: base model, train data, the notes each
    # choice saw (threshold, checkpoint, quantization), so a report can say held-out or in-sample.
    provenance: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # evaluation name -> metrics
    files: dict = field(default_factory=dict)  # relative path -> {"sha256", "bytes"}
    format: int = BUNDLE_FORMAT
    verifier: VerifierPart | None = None  # None: the models write codes (generative)
    # What runs by default: "model" (the default model over the ranker) or "retrieval" (the
    # ranker alone; the models stay selectable).
    default_system: str = "model"

    # --- reading -------------------------------------------------------------------------
    def path(self, rel: str) -> Path:
        return self.root / rel

    def default_model(self) -> BundleModel | None:
        return next((m for m in self.models if m.default), None)

    def model_to_run(self, with_torch: bool = False) -> BundleModel | None:
        """The default model, or the bundle's BF16 GGUF in its place where the default is a GGUF
        and this CPU computes bf16 natively (AVX512-BF16, AMX): the same weights at higher
        precision, and there the fastest to read a prompt (llama.cpp, 2 cores with AVX512-BF16:
        1.84 s per note against Q4_K_M's 2.56 s). Elsewhere llama.cpp widens bf16 in software
        (not measured), so the default stays.

        `with_torch`: the caller can run the merged model through torch (the builder's evaluate,
        benchmark and serve; the packaged app has no torch). On a CPU with AMX a verifier's
        merged model then runs in bf16 instead (`transformers_runtime.auto_dtype`): AMX computes
        its products, where llama.cpp has no working AMX path (2 cores: 0.27 s against the BF16
        GGUF's 1.24 s for a 990-token prompt)."""
        model = self.default_model()
        if model is None or model.format != "gguf" or not cpu_has_native_bf16():
            return model
        if with_torch and self.verifier is not None and cpu_has_amx_bf16() and torch_installed() and (
                merged := self.find_model(fmt="safetensors")):
            return merged
        return next((m for m in self.models if m.format == "gguf" and m.variant.upper() == "BF16"), model)

    def find_model(self, fmt: str | None = None, variant: str | None = None) -> BundleModel | None:
        """The default model, or the first of a format (and variant)."""
        matching = [m for m in self.models if (fmt is None or m.format == fmt)
                    and (variant is None or m.variant.lower() == variant.lower())]
        return next((m for m in matching if m.default), matching[0] if matching else None)

    def model_for_path(self, path: str | Path) -> BundleModel | None:
        """The bundle's model at this path (a file or folder inside the bundle), if any."""
        target = Path(path).resolve()
        return next((m for m in self.models if self.path(m.path).resolve() == target), None)

    def runtime_spec(self, choice: str | None = None, with_torch: bool = False) -> str:
        """The `open_runtime` spec for a choice: None or "bundle" (the default system: the
        default model, or "retrieval" where `default_system` says so; `with_torch` as in
        `model_to_run`), a format
        ("gguf", "onnx", "safetensors") or a variant ("Q8_0", "int8") of this bundle, "retrieval",
        or anything else `open_runtime` takes (a file, ollama:NAME, openai:URL#MODEL) as it is."""
        if choice == "retrieval":
            return "retrieval"
        if choice in (None, "", "bundle"):
            model = self.model_to_run(with_torch)
            if model is None or self.default_system == "retrieval":
                return "retrieval"  # a retrieval-only bundle, or the model did not earn its place
            return str(self.path(model.path))
        if choice in RUNTIMES or any(choice.lower() == m.variant.lower() for m in self.models):
            model = (self.find_model(fmt=choice) if choice in RUNTIMES
                     else self.find_model(variant=choice))
            if model is None:
                have = ", ".join(f"{m.format} {m.variant}" for m in self.models) or "no model"
                raise BundleError(f"The bundle {self.root} has no {choice} model (it has {have}): "
                                  "export one with `python -m builder export`, then `bundle`.")
            return str(self.path(model.path))
        return choice

    def stacker(self, spec: str, served_verifier: bool = False, served_model: str = ""):
        """The verifier's stacker for a model spec: this bundle's own model, or a server when
        `served_verifier` says it serves this bundle's verifier: the GGUF whose file name the
        server's model name ends with (`served_model`; llama.cpp's server names its model by
        the path it was started with), else the GGUF the bundle runs here (`model_to_run`, as
        `register` puts it there). None: a generative bundle, retrieval, a server running a
        generative model, or a model file from elsewhere."""
        from .select import Stacker  # noqa: PLC0415

        if self.verifier is None or spec == "retrieval":
            return None
        if spec.startswith(("ollama:", "openai:")):
            if not served_verifier:
                return None
            named = PureWindowsPath(served_model).name  # the file name, after "/" or a backslash
            model = next((m for m in self.models if named and m.format == "gguf"
                          and Path(m.path).name == named), None) or self.model_to_run()
        else:
            model = self.model_for_path(spec)
            if model is None:
                return None  # a model from elsewhere, not this bundle's verifier
        own = self.verifier.stackers.get(model.path) if model else None
        return Stacker.from_dict(own or self.verifier.stacker)

    def load_retriever(self, cs):
        """The bundle's candidate ranker over this code set."""
        import gzip  # noqa: PLC0415

        from .retrieve import Retriever  # noqa: PLC0415

        self.check_codeset(cs)
        with gzip.open(self.path(self.retriever.path), "rt", encoding="utf-8") as fh:
            model = json.load(fh)
        model["threshold"] = self.retriever.threshold
        return Retriever(cs, model)

    def check_codeset(self, cs) -> None:
        if cs.edition != self.codeset.get("edition"):
            raise BundleError(f"The bundle {self.root} was built for {self.codeset.get('edition')}, "
                              f"this installation has {cs.edition}: rebuild the bundle with `make all`.")
        want = self.codeset.get("sha256")
        if want and cs.content_sha256() != want:
            raise BundleError(f"The code set installed here ({cs.edition}, from simple-icd-10-cm "
                              f"{cs.source_version}) differs from the one the bundle {self.root} was "
                              f"built with ({self.codeset.get('source_version')}): install that "
                              "version (`make setup`) or rebuild the bundle.")

    def verify(self, only: list[str] | None = None) -> None:
        """Check size and sha256 of every file (or those under the given relative paths)."""
        for rel, entry in self.files.items():
            if only is not None and not any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in only):
                continue
            path = self.path(rel)
            if not path.is_file():
                raise BundleError(f"{path} is missing from the bundle {self.root}: rebuild it with "
                                  "`python -m builder bundle`, or copy the whole folder again.")
            if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
                raise BundleError(f"{path} is damaged or was changed after the bundle was built "
                                  "(sha256 differs): copy the bundle again or rebuild it with "
                                  "`python -m builder bundle`.")

    # --- writing (the builder calls these) -----------------------------------------------
    def to_json(self) -> dict:
        out = asdict(self)
        out.pop("root")
        return {"format": out.pop("format"), **out}

    def save(self) -> None:
        """Write bundle.json atomically (files already in place and listed in `files`)."""
        from .files import write_json_atomic  # noqa: PLC0415

        write_json_atomic(self.root / BUNDLE_FILE, self.to_json())


def checksum_tree(root: Path) -> dict:
    """{relative path: {"sha256", "bytes"}} of every file under root but bundle.json."""
    return {str(p.relative_to(root)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != BUNDLE_FILE}


def read(root: str | Path) -> Bundle:
    """Read bundle.json and check format and contract version; no file is hashed."""
    root = Path(root)
    if root.is_file() and root.name == BUNDLE_FILE:
        root = root.parent
    meta_path = root / BUNDLE_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{root} is not a coder bundle (no {BUNDLE_FILE}): build one with "
                          "`make all` or `python -m builder bundle`.") from None
    except (OSError, ValueError) as exc:
        raise BundleError(f"{meta_path} cannot be read ({exc}): copy the bundle again or rebuild "
                          "it with `python -m builder bundle`.") from None
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{root} is a bundle of format {meta.get('format') if isinstance(meta, dict) else '?'}; "
                          f"this version reads format {BUNDLE_FORMAT}: rebuild it with `make all`.")
    verifier = meta.get("verifier") if isinstance(meta, dict) else None
    if verifier and verifier.get("contract") != VERIFIER_CONTRACT:
        raise BundleError(f"{root} holds a verifier trained for verifier input {verifier.get('contract')}; "
                          f"this version builds input {VERIFIER_CONTRACT}, so its scores would be "
                          "wrong: rebuild the bundle with `make all`.")
    if meta.get("default_system", "model") not in DEFAULT_SYSTEMS:
        raise BundleError(f"{meta_path} names default system {meta.get('default_system')!r}; this "
                          f"version knows {', '.join(DEFAULT_SYSTEMS)}: rebuild the bundle with "
                          "`python -m builder bundle`.")
    if meta.get("contract_version") != CONTRACT_VERSION:
        raise BundleError(f"{root} was built for prompt contract {meta.get('contract_version')}; this "
                          f"version speaks contract {CONTRACT_VERSION}, so its model would be "
                          "mis-read: rebuild the bundle with `make all` (or use the app version "
                          "that built it).")
    try:
        return Bundle(
            root=root, name=meta["name"], created_at=meta["created_at"],
            contract_version=meta["contract_version"], codeset=meta["codeset"],
            retriever=RetrieverPart(**meta["retriever"]),
            models=[BundleModel(**m) for m in meta.get("models", [])],
            provenance=meta.get("provenance", {}), metrics=meta.get("metrics", {}),
            files=meta.get("files", {}), format=meta["format"],
            verifier=VerifierPart(**meta["verifier"]) if meta.get("verifier") else None,
            default_system=meta.get("default_system", "model"))
    except (KeyError, TypeError) as exc:
        raise BundleError(f"{meta_path} is incomplete ({exc}): rebuild the bundle with "
                          "`python -m builder bundle`.") from None


def load(root: str | Path, cs=None, verify: bool = True) -> Bundle:
    """Read a bundle, check it against this code set, and verify every file's sha256."""
    bundle = read(root)
    if cs is not None:
        bundle.check_codeset(cs)
    if verify:
        bundle.verify()
    return bundle


def embedded() -> Bundle:
    """The retrieval-only bundle shipped inside the package (the ranker fitted on CodiEsp)."""
    return read(Path(str(resources.files("models") / "resources" / "bundle")))


def bundle_of(path: str | Path) -> Path | None:
    """The bundle folder holding a model file or folder, if it is inside one."""
    for folder in [Path(path).resolve(), *Path(path).resolve().parents]:
        if (folder / BUNDLE_FILE).is_file():
            return folder
    return None


def artifact_roots() -> list[Path]:
    """Where built bundles are looked for: $ICD10_CODER_ARTIFACTS (os.pathsep-separated), then
    artifacts/ beside the source tree and in the working folder."""
    roots = [Path(p) for p in os.environ.get("ICD10_CODER_ARTIFACTS", "").split(os.pathsep) if p]
    return roots + [Path(__file__).resolve().parents[1] / "artifacts", Path.cwd() / "artifacts"]


def find(roots: list[Path] | None = None) -> list[Bundle]:
    """Usable bundles (ROOT/bundle.json, ROOT/*/bundle.json or ROOT/*/bundle/bundle.json),
    newest first. A bundle that cannot be read hides itself, never the others."""
    seen: dict[Path, Bundle] = {}
    for root in roots if roots is not None else artifact_roots():
        root = Path(root)
        if not root.is_dir():
            continue
        for meta in [root / BUNDLE_FILE, *root.glob(f"*/{BUNDLE_FILE}"), *root.glob(f"*/{RUN_BUNDLE}/{BUNDLE_FILE}")]:
            if meta.is_file() and meta.parent.resolve() not in seen:
                try:
                    seen[meta.parent.resolve()] = read(meta.parent)
                except BundleError:
                    continue
    return sorted(seen.values(), key=lambda b: b.created_at, reverse=True)


def resolve(path: str | Path | None = None, run_dir: str | Path | None = None,
            newest: bool = True) -> Bundle:
    """The bundle a command works on, checksums verified: PATH if given (a bundle folder, or a
    run folder holding one), else the run's bundle, else (with `newest`) the newest under
    artifacts/."""
    from . import codeset  # noqa: PLC0415

    cs = codeset.load()
    if path:
        for folder in (Path(path), Path(path) / RUN_BUNDLE):
            if (folder / BUNDLE_FILE).is_file():
                return load(folder, cs)
        raise BundleError(f"{path} is not a coder bundle (no bundle.json in it or in its bundle/ "
                          "folder): build one with `make all`.")
    if run_dir and (Path(run_dir) / RUN_BUNDLE / BUNDLE_FILE).is_file():
        return load(Path(run_dir) / RUN_BUNDLE, cs)
    found = find() if newest else []
    if not found:
        raise BundleError(f"No coder bundle in {run_dir or 'artifacts/'}: build one with `make all` "
                          "(or `python -m builder bundle` in a run that has a retriever and "
                          "exports), or give --bundle.")
    return load(found[0].root, cs)
