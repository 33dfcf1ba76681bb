"""`python -m builder register ollama|lmstudio`: make the exported GGUF usable in Ollama or LM Studio.

Ollama (>= 0.5.5): upload the GGUF as a blob (`/api/blobs/sha256:...`, skipped when Ollama has
it already), create the model from it with `/api/create` (`files`, `template`, `system`,
`parameters`), check it with `show`, then answer the check notes through it. The Modelfile that
`builder export` writes stays the way for people who prefer `ollama create -f Modelfile`.

LM Studio: copy (or link, never move) the GGUF into `~/.lmstudio/models/<publisher>/<model>/`,
where LM Studio looks for models, and say how to load and use it.
"""
from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path

import httpx
from tqdm import tqdm

from builder.distribution.modelfile import CHAT_FORMATS, UnknownChatFormat, chat_format
from builder.stages.export import gguf_metadata
from models.bundle import Bundle
from models.contract import SYSTEM_PROMPT
from models.errors import CoderError
from models.files import atomic_path, sha256_file
from models.net import normalize_url, ollama_url
from models.runtimes import RuntimeUnavailable

LMSTUDIO_PUBLISHER = "icd10-coder"


class RegisterError(CoderError, RuntimeError):
    """Registration failed; the message says what to do."""


def bundle_gguf(bundle: Bundle, name: str | None = None) -> Path:
    """The GGUF the bundle runs here (its default, or its BF16 on a CPU with native bf16:
    `Bundle.model_to_run`), or the one named (a file name, a path inside the bundle, or a
    quantization type such as Q8_0)."""
    ggufs = [m for m in bundle.models if m.format == "gguf"]
    if name:
        wanted = Path(name)
        model = next((m for m in ggufs if name.lower() == m.variant.lower() or wanted.name == Path(m.path).name
                      or (wanted.is_absolute() and bundle.path(m.path).resolve() == wanted.resolve())), None)
    else:
        runs = bundle.model_to_run()
        model = runs if runs in ggufs else bundle.find_model(fmt="gguf")
    if model is None:
        have = ", ".join(Path(m.path).name for m in ggufs) or "none"
        raise RegisterError(f"The bundle {bundle.root} has no {name or 'GGUF'} (GGUF files: {have}): "
                            "export one with `python -m builder export --quantize TYPE`, then `bundle`.")
    return bundle.path(model.path)


def ollama_name(gguf: Path) -> str:
    """icd10-coder-Q4_K_M.gguf -> icd10-coder:q4_k_m (Ollama's name:tag)."""
    stem = gguf.stem
    base, _, qtype = stem.rpartition("-")
    return f"{base}:{qtype.lower()}" if base and qtype else f"{stem.lower()}:latest"


def ollama_request(gguf: Path) -> dict:
    """The /api/create fields for a GGUF: its chat format as a Go template, stops, greedy."""
    _, template, stops = CHAT_FORMATS[chat_format(gguf_metadata(gguf)["chat_template"] or "")]
    return {"template": template, "system": SYSTEM_PROMPT,
            "parameters": {"temperature": 0, "repeat_penalty": 1.0, "num_ctx": 4096, "stop": stops}}


def _upload_blob(client: httpx.Client, gguf: Path, digest: str) -> bool:
    """Upload unless Ollama has the blob; True when uploaded."""
    if client.head(f"/api/blobs/{digest}").status_code == 200:
        return False
    size = gguf.stat().st_size

    def chunks():
        with open(gguf, "rb") as fh, tqdm(total=size, unit="B", unit_scale=True,
                                           desc=f"upload {gguf.name}") as bar:
            while block := fh.read(1 << 20):
                bar.update(len(block))
                yield block
    response = client.post(f"/api/blobs/{digest}", content=chunks(),
                           headers={"Content-Length": str(size)})
    if response.status_code not in (200, 201):
        raise RegisterError(f"Ollama refused the upload of {gguf.name} (HTTP "
                            f"{response.status_code}): {response.text[:300]}")
    return True


def register_ollama(gguf: Path, name: str | None = None, host: str | None = None,
                    check: bool = True, kind: str = "generative") -> dict:
    """`kind`: what the model does (models/select.py), which decides the check it must pass:
    `generative` answers the check note through the contract; `verifier` scores its candidates
    (raw prompts, top log-probabilities: Ollama 0.12.11 or newer)."""
    import ollama

    from models.runtimes.ollama_runtime import check_server

    started = time.perf_counter()
    name = name or ollama_name(gguf)
    url = normalize_url(ollama_url(host))
    try:
        version = check_server(url)  # down, or older than /api/create with `files`
    except RuntimeUnavailable as exc:
        raise RegisterError(str(exc)) from exc
    try:
        request = ollama_request(gguf)
    except (UnknownChatFormat, ValueError, KeyError) as exc:
        raise RegisterError(f"{gguf} cannot be described to Ollama: {exc}") from exc
    digest = f"sha256:{sha256_file(gguf)}"
    # The note never travels here, only the model; still no proxies and no redirects.
    with httpx.Client(base_url=url, trust_env=False, timeout=httpx.Timeout(600, connect=5)) as http:
        uploaded = _upload_blob(http, gguf, digest)
    client = ollama.Client(host=url, trust_env=False, follow_redirects=False, timeout=600)
    try:
        for status in client.create(model=name, files={gguf.name: digest}, stream=True, **request):
            print(f"ollama: {status.status}", flush=True)
        shown = client.show(name)
    except ollama.ResponseError as exc:
        raise RegisterError(f"Ollama could not create {name}: {exc.error}") from exc
    except ConnectionError as exc:
        raise RegisterError(f"Lost Ollama at {url} while creating {name}: {exc}") from exc
    if shown.details is None or (shown.details.format or "gguf") != "gguf" or not shown.template:
        raise RegisterError(f"Ollama created {name} but `show` does not describe our GGUF "
                            f"(details={shown.details}); recreate it with `ollama create -f Modelfile`.")
    result = {"runtime": "ollama", "name": name, "url": url, "ollama_version": version,
              "digest": digest, "uploaded": uploaded, "bytes": gguf.stat().st_size,
              "template": shown.template == request["template"],
              "use": {"app": f"Settings -> Ollama model -> {name}",
                      "evaluate": f"python -m builder evaluate --model ollama:{name}",
                      "cli": f"ollama run {name}"}}
    if check:
        from builder.answer_check import AnswerCheckFailed, check_model

        try:
            result["check"] = check_model(f"ollama:{url}#{name}", kind, allow_remote=True)
        except AnswerCheckFailed as exc:
            raise RegisterError(f"{name} is registered but does not answer through the contract: {exc}") from exc
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def lmstudio_models_dir(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get("LMSTUDIO_MODELS_DIR")
                or Path.home() / ".lmstudio" / "models").expanduser()


def register_lmstudio(gguf: Path, models_dir: str | None = None, link: bool = False,
                      publisher: str = LMSTUDIO_PUBLISHER) -> dict:
    """Place the GGUF where LM Studio finds it: <models>/<publisher>/<model>-GGUF/<file>."""
    started = time.perf_counter()
    folder = lmstudio_models_dir(models_dir) / publisher / f"{gguf.stem.rpartition('-')[0] or gguf.stem}-GGUF"
    dest = folder / gguf.name
    digest = sha256_file(gguf)
    how = "already there"
    if not (dest.is_file() and dest.stat().st_size == gguf.stat().st_size and sha256_file(dest) == digest):
        folder.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink() or dest.exists():
            dest.unlink()  # an older build of ours (we own this folder)
        if link:
            try:
                os.link(gguf, dest)
                how = "hard link"
            except OSError:  # another filesystem
                dest.symlink_to(gguf.resolve())
                how = "symbolic link"
        else:
            try:
                with atomic_path(dest) as tmp:
                    shutil.copyfile(gguf, tmp)
                    if sha256_file(tmp) != digest:
                        raise RegisterError(f"The copy of {gguf.name} in {folder} does not match "
                                            "the original (failing disk?); nothing was left there.")
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                raise RegisterError(f"No space left in {folder} for {gguf.name} "
                                    f"({gguf.stat().st_size / 1e6:.0f} MB): free some space, or use "
                                    "--link. Nothing was left there.") from exc
            how = "copied"
    model_key = f"{publisher}/{folder.name}"
    return {"runtime": "lmstudio", "path": str(dest), "how": how, "sha256": digest,
            "seconds": round(time.perf_counter() - started, 1),
            "use": {"lmstudio": f"My Models -> {model_key} -> Load (or `lms load {model_key}`), "
                                "then Developer -> Start server (port 1234)",
                    "app": "Settings -> LM Studio or OpenAI-compatible server -> "
                           "http://127.0.0.1:1234/v1#<the model id `lms ps` shows>",
                    "evaluate": "python -m builder evaluate --model "
                                "'openai:http://127.0.0.1:1234/v1#<model id>'"}}
