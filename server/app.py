"""The REST server: the app's suggestions over HTTP, for integrators (`python -m server`).

    POST /v1/suggest          a note in; suggestions (code, description, evidence, flags) out
    GET  /v1/codes/{code}     one ICD-10-CM FY2026 code: description, billable, notes, hierarchy
    GET  /v1/codes?search=    codes whose descriptions match words
    GET  /healthz             the model loaded, and the code-set edition
    GET  /openapi.json        the API as OpenAPI 3

The same `Pipeline.suggest` as the app and `evaluate`. It listens on 127.0.0.1 unless told
otherwise with --allow-remote-clients: notes would cross the network unencrypted. Requests are
capped in size; one note is coded at a time (a llama.cpp model is not re-entrant) and a client
that disconnects cancels its generation. No note is logged. No /docs page: Swagger UI would load
its scripts from a CDN, and this server runs offline.
"""
from __future__ import annotations

import asyncio
import threading
import time

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from models import rules
from models.codeset import InvalidCodeFormat, UnknownCode
from models.errors import CoderError
from models.net import is_loopback
from models.notes import MAX_NOTE_CHARS, NoteError
from models.pipeline import Cancelled, Flag, Pipeline
from models.runtimes import RuntimeUnavailable

MAX_BODY_BYTES = 4 * MAX_NOTE_CHARS + 4096  # the longest note, even if every character is 4 bytes
DEFAULT_PORT = 8321


class ServeError(CoderError, RuntimeError):
    pass


# --- API types -----------------------------------------------------------------------------------
class SuggestRequest(BaseModel):
    note: str = Field(description=f"The clinical note, plain text, up to {MAX_NOTE_CHARS:,} characters.")


class EvidenceOut(BaseModel):
    start: int = Field(description="Character offset in the note where the evidence starts.")
    end: int
    text: str


class SuggestionOut(BaseModel):
    code: str
    description: str = Field(description="The official FY2026 description.")
    confidence: float
    evidence: EvidenceOut | None = Field(description="The words of the note that support the code.")
    flags: list[str] = Field(description=", ".join(
        f for f in Flag if f not in (Flag.NOT_IN_CODESET, Flag.NEGATED, Flag.FAMILY_HISTORY)))
    billable_children: list[str]
    conflicts_with: list[str] = Field(description="The codes an excludes1_conflict names.")
    more_specific: list[str] = Field(description=(
        "With more_specific_suggested: the suggested codes of the same condition that say more."))
    combines: list[str] = Field(default_factory=list, description=(
        "With combination: the codes of the note's conditions that this one code reports "
        "(I12.9 for I10 and N18.4); those it does not ask for as additional codes are in rejected."))
    asked_by: list[str] = Field(default_factory=list, description=(
        "With additional_code: the suggested codes whose \"Use additional code\" notes ask for "
        "this one (E11.65 for Z79.84, where the note names metformin)."))


class RejectedOut(BaseModel):
    raw: str
    reason: str


class SuggestResponse(BaseModel):
    suggestions: list[SuggestionOut]
    rejected: list[RejectedOut] = Field(description=(
        "What did not become a suggestion, and why: not a valid code, denied in the note (negated), "
        f"or left out by a coding rule ({', '.join(rules.REASONS)})."))
    warnings: list[str]
    runtime: str
    edition: str
    seconds: float


class SearchHitOut(BaseModel):
    code: str
    description: str
    billable: bool
    matched: str
    score: float


class Health(BaseModel):
    status: str
    runtime: str
    edition: str
    load_seconds: float


class BodySizeLimit:
    """413 before reading more than `limit` bytes, whether or not Content-Length is sent."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._too_large(scope, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message
        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._too_large(scope, send)

    async def _too_large(self, scope, send):
        response = JSONResponse({"detail": f"The request is larger than {self.limit:,} bytes; a "
                                           f"note may have up to {MAX_NOTE_CHARS:,} characters."},
                                status_code=413)
        await response(scope, None, send)


class _TooLarge(Exception):
    pass


# --- the app -------------------------------------------------------------------------------------
def create_app(pipeline: Pipeline, load_seconds: float = 0.0) -> FastAPI:
    app = FastAPI(title="ICD-10-CM coder", version="0.1.0", docs_url=None, redoc_url=None,
                  description="Suggested ICD-10-CM FY2026 codes for a clinical note, each with its "
                              "official description, the words that support it, and warnings.")
    app.add_middleware(BodySizeLimit, limit=MAX_BODY_BYTES)
    lock = threading.Lock()  # one generation at a time
    cs = pipeline.cs

    def suggest_locked(note: str, cancel: threading.Event):
        with lock:
            if cancel.is_set():
                raise Cancelled()
            return pipeline.suggest(note, cancel=cancel)

    @app.post("/v1/suggest", response_model=SuggestResponse,
              responses={413: {"description": "Request too large"},
                         422: {"description": "The note cannot be coded (empty, binary, too long)"},
                         503: {"description": "The model failed"}})
    async def suggest(body: SuggestRequest, request: Request):
        cancel = threading.Event()
        task = asyncio.get_running_loop().run_in_executor(None, suggest_locked, body.note, cancel)
        while not task.done():
            await asyncio.wait({task}, timeout=0.2)
            if not task.done() and await request.is_disconnected():
                cancel.set()  # the client gave up: stop generating for it
        try:
            result = task.result()
        except NoteError as exc:
            raise HTTPException(422, str(exc)) from exc
        except Cancelled:
            return JSONResponse({"detail": "cancelled: the client disconnected"}, status_code=499)
        except RuntimeUnavailable as exc:
            raise HTTPException(503, str(exc)) from exc
        return SuggestResponse(
            suggestions=[s.to_dict() for s in result.suggestions],
            rejected=[r.__dict__ for r in result.rejected], warnings=result.warnings,
            runtime=result.runtime, edition=result.edition, seconds=result.seconds)

    @app.get("/v1/codes/{code}", responses={404: {"description": "Not a FY2026 code"},
                                            422: {"description": "Not shaped like a code"}})
    def code(code: str) -> dict:
        try:
            return cs.record(cs.normalize(code)).to_dict()
        except InvalidCodeFormat as exc:
            raise HTTPException(422, str(exc)) from exc
        except UnknownCode as exc:
            raise HTTPException(404, str(exc)) from exc

    @app.get("/v1/codes", response_model=list[SearchHitOut])
    def search(search: str = Query(min_length=1, max_length=500, description="words or a code prefix"),
               limit: int = Query(20, ge=1, le=200), billable_only: bool = False):
        return [SearchHitOut(code=h.code, description=h.description, billable=h.billable,
                             matched=h.matched, score=round(h.score, 4))
                for h in cs.search(search, limit=limit, billable_only=billable_only)]

    @app.get("/healthz", response_model=Health)
    def healthz():
        return Health(status="ok", runtime=pipeline.selector.name, edition=cs.edition,
                      load_seconds=round(load_seconds, 2))

    return app


def check_listen(host: str, allow_remote_clients: bool) -> None:
    # A bind address, not a destination: 0.0.0.0 means every interface here.
    if (host in ("0.0.0.0", "::", "") or not is_loopback(host)) and not allow_remote_clients:
        raise ServeError(f"Listening on {host} would let other computers send notes here, "
                         "unencrypted. Use 127.0.0.1 (the default), or add --allow-remote-clients "
                         "behind a TLS proxy you trust.")


def serve(bundle, model: str | None = None, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          allow_remote_clients: bool = False, allow_remote: bool = False) -> None:
    """Serve a coder bundle: its retriever and its default model, or `model` (see
    `Bundle.runtime_spec`: a format of the bundle, retrieval, a file or a server)."""
    import uvicorn

    check_listen(host, allow_remote_clients)
    started = time.perf_counter()
    try:
        pipeline = Pipeline.from_bundle(bundle, model, runtime_options={"allow_remote": allow_remote})
    except RuntimeUnavailable as exc:
        raise ServeError(str(exc)) from exc
    load_seconds = time.perf_counter() - started
    app = create_app(pipeline, load_seconds)
    print(f"Serving {pipeline.selector.name} from the bundle {bundle.root} on http://{host}:{port} "
          f"(loaded in {load_seconds:.1f} s; API: http://{host}:{port}/openapi.json)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
