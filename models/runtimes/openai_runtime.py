"""Any OpenAI-compatible chat server: LM Studio (port 1234), llama-cpp-python's server, vLLM.

Spec: `openai:URL#MODEL`, e.g. `openai:http://127.0.0.1:1234/v1#icd10-coder`; without `#MODEL`
the server's only model is used. Answers stream, so a cancel stops within one token (closing the
stream stops the server's generation too).

Structured output: servers differ. We ask for `json_schema` (OpenAI, LM Studio, vLLM); a server
that rejects it gets `json_object` with the schema (llama-cpp-python), then plain JSON mode. The
contract's parser reads whatever comes back; the pipeline validates every code.
"""
from __future__ import annotations

import json
import os

import httpx

from ..contract import ANSWER_SCHEMA
from ..net import DEFAULT_LMSTUDIO_URL, RemoteNotAllowed, check_destination
from . import Cancelled, Generation, ModelRequest, RuntimeUnavailable, SlotScores

TOP_LOGPROBS = 10

RESPONSE_FORMATS = [
    {"type": "json_schema", "json_schema": {"name": "icd10_codes", "schema": ANSWER_SCHEMA, "strict": True}},
    {"type": "json_object", "schema": ANSWER_SCHEMA},
    None,
]


def split_spec(value: str) -> tuple[str, str]:
    url, _, model = value.partition("#")
    url = url.strip() or DEFAULT_LMSTUDIO_URL
    if "://" in url and url.split("://", 1)[1].count("/") == 0:
        url += "/v1"  # http://127.0.0.1:1234 -> its OpenAI API
    return url, model.strip()


def list_models(url: str, client: httpx.Client | None = None, timeout: float = 5.0) -> list[str]:
    """The model ids an OpenAI-compatible server at url (ending in /v1) offers now."""
    try:
        if client is not None:
            response = client.get("/models")
        else:
            response = httpx.get(f"{url}/models", timeout=timeout, trust_env=False)
    except httpx.HTTPError as exc:
        raise RuntimeUnavailable(
            f"No OpenAI-compatible server answers at {url} ({type(exc).__name__}). Start it "
            "first: LM Studio -> Developer -> Start server (port 1234), or `python -m "
            "models.runtimes.llamacpp_server --model FILE.gguf`.") from exc
    if response.status_code != 200:
        raise RuntimeUnavailable(f"{url}/models answered HTTP {response.status_code}: "
                                 f"{response.text[:200]}. Is this an OpenAI-compatible server?")
    try:
        return [m["id"] for m in response.json()["data"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise RuntimeUnavailable(f"{url}/models did not answer like an OpenAI-compatible "
                                 "server (no model list).") from exc


class OpenAICompatibleRuntime:
    def __init__(self, value: str, allow_remote: bool = False, timeout: float = 600.0):
        url, model = split_spec(value)
        try:
            self.url = check_destination(url, allow_remote, "The OpenAI-compatible server")
        except RemoteNotAllowed as exc:
            raise RuntimeUnavailable(str(exc)) from exc
        key = os.environ.get("ICD10_CODER_API_KEY")
        self.client = httpx.Client(base_url=self.url, trust_env=False,
                                   timeout=httpx.Timeout(timeout, connect=5.0),
                                   headers={"Authorization": f"Bearer {key}"} if key else {})
        models = list_models(self.url, self.client)
        if not model and len(models) != 1:
            raise RuntimeUnavailable(f"The server at {self.url} has {len(models)} models "
                                     f"({', '.join(models[:8]) or 'none'}); name one: "
                                     f"openai:{self.url}#MODEL.")
        self.model = model or models[0]
        if models and self.model not in models:
            raise RuntimeUnavailable(f"The server at {self.url} has no model {self.model!r}; it "
                                     f"has: {', '.join(models[:8])}. Load it there or pick another.")
        self.name = f"openai:{self.url}#{self.model}"
        self.format_index = 0  # first response format this server accepts

    def generate(self, request: ModelRequest) -> Generation:
        while True:
            # Greedy, as the local runtimes: llama.cpp's server and LM Studio apply a repeat
            # penalty of 1.1 by default, which changes even a temperature-0 answer.
            body = {"model": self.model, "messages": request.messages, "temperature": 0.0,
                    "repeat_penalty": 1.0, "max_tokens": request.max_tokens, "stream": True}
            fmt = RESPONSE_FORMATS[self.format_index]
            if fmt is not None:
                body["response_format"] = fmt
            try:
                return self._stream(body, request)
            except _FormatRejected as rejected:
                if self.format_index == len(RESPONSE_FORMATS) - 1:
                    raise RuntimeUnavailable(f"The server at {self.url} refused the request: "
                                             f"{rejected}") from None
                self.format_index += 1

    def _stream(self, body: dict, request: ModelRequest) -> Generation:
        cancel = request.cancel
        parts: list[str] = []
        counts = [0, 0]
        try:
            with self.client.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code != 200:
                    text = response.read().decode(errors="replace")
                    # Servers say "unsupported response_format" with 400, 422, even 500.
                    if "response_format" in body and ("response_format" in text
                                                      or response.status_code in (400, 422)):
                        raise _FormatRejected(text[:300])
                    raise RuntimeUnavailable(f"The server at {self.url} answered HTTP "
                                             f"{response.status_code}: {text[:300]}")
                for line in response.iter_lines():
                    if cancel is not None and cancel.is_set():
                        raise Cancelled()  # leaving the block closes the stream
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError as exc:
                        raise RuntimeUnavailable(f"The server at {self.url} sent something that "
                                                 f"is not an OpenAI-compatible stream: {data[:120]!r}") from exc
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                        counts = [usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0]
                    for choice in chunk.get("choices") or []:
                        parts.append((choice.get("delta") or {}).get("content") or "")
        except httpx.TimeoutException as exc:
            raise RuntimeUnavailable(f"The server at {self.url} did not answer in time.") from exc
        except httpx.HTTPError as exc:
            raise RuntimeUnavailable(f"Lost the connection to {self.url} ({type(exc).__name__}); "
                                     "is the server still running?") from exc
        return Generation("".join(parts), *counts)

    def decide(self, prompts: list[str], choices: tuple[str, str], cancel=None) -> SlotScores:
        """For each raw prompt, one greedy token through /completions with its top
        log-probabilities: logprob(choices[0]) - logprob(choices[1]). A choice missing from the
        top ones counts one nat below the least shown; a server that returns no log-probabilities
        is refused (its yes/no alone would be no score)."""
        margins, tokens = [], 0
        for prompt in prompts:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            body = {"model": self.model, "prompt": prompt, "max_tokens": 1, "temperature": 0.0,
                    "repeat_penalty": 1.0, "logprobs": TOP_LOGPROBS}
            try:
                response = self.client.post("/completions", json=body)
            except httpx.HTTPError as exc:
                raise RuntimeUnavailable(f"Lost the connection to {self.url} ({type(exc).__name__}); "
                                         "is the server still running?") from exc
            if response.status_code != 200:
                raise RuntimeUnavailable(f"The server at {self.url} answered HTTP "
                                         f"{response.status_code} to /completions: {response.text[:300]}")
            try:
                data = response.json()
                top = (data["choices"][0].get("logprobs") or {}).get("top_logprobs") or []
                top = top[0] if top else {}
                tokens += int((data.get("usage") or {}).get("prompt_tokens") or 0)
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise RuntimeUnavailable(f"The server at {self.url} did not answer /completions "
                                         "like an OpenAI-compatible server.") from exc
            if not top:
                raise RuntimeUnavailable(f"The server at {self.url} returns no log-probabilities: "
                                         "the verifier cannot read its decisions there. Run the "
                                         "bundle's model in the app (llama.cpp) instead.")
            floor = min(top.values()) - 1.0
            margins.append(float(top.get(choices[0], floor) - top.get(choices[1], floor)))
        return SlotScores(margins, tokens)

    def close(self) -> None:
        self.client.close()


class _FormatRejected(Exception):
    pass
