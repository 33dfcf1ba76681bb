"""A model served by Ollama, through the `ollama` client.

Spec: `ollama:NAME` (Ollama at OLLAMA_HOST, default 127.0.0.1:11434) or `ollama:URL#NAME`.
The contract's JSON schema goes as `format` (structured outputs, Ollama >= 0.5.0), decoding is
greedy, and the answer streams so a cancel stops within one token.
"""
from __future__ import annotations

import httpx

from ..contract import ANSWER_SCHEMA
from ..net import RemoteNotAllowed, check_destination, ollama_url
from . import Cancelled, Generation, ModelRequest, RuntimeUnavailable, SlotScores

MIN_VERSION = (0, 5, 5)  # `format` with a JSON schema, and /api/create with `files`
LOGPROBS_VERSION = (0, 12, 11)  # top_logprobs of generated tokens: what a verifier reads
TOP_LOGPROBS = 10


def split_spec(value: str) -> tuple[str, str]:
    if "#" in value:
        url, _, name = value.partition("#")
        return ollama_url(url), name.strip()
    return ollama_url(), value.strip()


def parse_version(text: str) -> tuple[int, ...]:
    numbers = []
    for part in text.split("-")[0].split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        numbers.append(int(digits) if digits else 0)
    return tuple(numbers)


def not_running(url: str) -> str:
    return (f"Ollama is not running at {url}. Start it (`ollama serve`, or open the Ollama app), "
            "or set OLLAMA_HOST to where it runs.")


def check_server(url: str) -> str:
    """Ollama's version at url; RuntimeUnavailable when it is down or older than we need."""
    try:
        response = httpx.get(f"{url}/api/version", timeout=5.0, trust_env=False)
        version = response.json()["version"]
    except httpx.HTTPError as exc:
        raise RuntimeUnavailable(not_running(url)) from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise RuntimeUnavailable(f"The server at {url} does not answer like Ollama "
                                 "(no /api/version). Check OLLAMA_HOST.") from exc
    if parse_version(version) < MIN_VERSION:
        raise RuntimeUnavailable(f"Ollama {version} at {url} is too old: it needs "
                                 f"{'.'.join(map(str, MIN_VERSION))} or newer. Update Ollama.")
    return version


def list_models(url: str, timeout: float = 5.0) -> list[str]:
    """The model names Ollama at url has now (GET /api/tags)."""
    try:
        response = httpx.get(f"{url}/api/tags", timeout=timeout, trust_env=False)
        return [m["name"] for m in response.json().get("models", [])]
    except httpx.HTTPError as exc:
        raise RuntimeUnavailable(not_running(url)) from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RuntimeUnavailable(f"The server at {url} does not answer like Ollama "
                                 "(no /api/tags). Check OLLAMA_HOST.") from exc


class OllamaRuntime:
    def __init__(self, value: str, allow_remote: bool = False, timeout: float = 600.0):
        import ollama

        url, self.model = split_spec(value)
        if not self.model:
            raise RuntimeUnavailable("Name the Ollama model, e.g. ollama:icd10-coder:q4_k_m.")
        try:
            self.url = check_destination(url, allow_remote, "Ollama")
        except RemoteNotAllowed as exc:
            raise RuntimeUnavailable(str(exc)) from exc
        self.version = check_server(self.url)
        # No proxies from the environment and no redirects: the note goes to this URL or nowhere.
        self.client = ollama.Client(host=self.url, timeout=timeout, trust_env=False,
                                    follow_redirects=False)
        try:
            self.client.show(self.model)
        except ollama.ResponseError as exc:
            if exc.status_code == 404:
                raise RuntimeUnavailable(
                    f"Ollama has no model {self.model!r}. Register ours with `python -m builder "
                    "register ollama`, or `ollama pull` it.") from exc
            raise RuntimeUnavailable(f"Ollama could not describe {self.model!r}: {exc.error}") from exc
        except ConnectionError as exc:
            raise RuntimeUnavailable(not_running(self.url)) from exc
        self.name = f"ollama:{self.url}#{self.model}"

    def generate(self, request: ModelRequest) -> Generation:
        import ollama

        cancel = request.cancel
        parts: list[str] = []
        counts = [0, 0]
        try:
            stream = self.client.chat(
                self.model, request.messages, stream=True, format=ANSWER_SCHEMA,
                options={"temperature": 0, "repeat_penalty": 1.0, "num_predict": request.max_tokens,
                         "seed": 0})
            try:
                for chunk in stream:
                    if cancel is not None and cancel.is_set():
                        raise Cancelled()
                    parts.append(chunk.message.content or "")
                    if chunk.done:
                        counts = [chunk.prompt_eval_count or 0, chunk.eval_count or 0]
            finally:
                stream.close()  # closes the HTTP stream: Ollama stops generating
        except ollama.ResponseError as exc:
            raise RuntimeUnavailable(f"Ollama refused the request for {self.model!r}: {exc.error}") from exc
        except ConnectionError as exc:
            raise RuntimeUnavailable(not_running(self.url)) from exc
        except httpx.HTTPError as exc:
            raise RuntimeUnavailable(f"Lost the connection to Ollama at {self.url} "
                                     f"({type(exc).__name__}); is it still running?") from exc
        except ValueError as exc:  # a line that is not JSON
            raise RuntimeUnavailable(f"Ollama at {self.url} sent an answer that is not JSON lines: {exc}") from exc
        return Generation("".join(parts), *counts)

    def decide(self, prompts: list[str], choices: tuple[str, str], cancel=None) -> SlotScores:
        """A verifier through Ollama: for each raw prompt (no template), one greedy token and its
        top log-probabilities; logprob(choices[0]) - logprob(choices[1]), a choice missing from
        the top ones counting one nat below the least shown."""
        import ollama

        if parse_version(self.version) < LOGPROBS_VERSION:
            raise RuntimeUnavailable(f"Ollama {self.version} returns no log-probabilities; the "
                                     f"verifier needs {'.'.join(map(str, LOGPROBS_VERSION))} or newer.")
        margins, tokens = [], 0
        for prompt in prompts:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            try:
                out = self.client.generate(self.model, prompt, raw=True, logprobs=True,
                                           top_logprobs=TOP_LOGPROBS,
                                           options={"temperature": 0, "num_predict": 1, "seed": 0})
            except ollama.ResponseError as exc:
                raise RuntimeUnavailable(f"Ollama refused the request for {self.model!r}: {exc.error}") from exc
            except (ConnectionError, httpx.HTTPError) as exc:
                raise RuntimeUnavailable(not_running(self.url)) from exc
            first = out.logprobs[0] if out.logprobs else None
            top = {t.token: t.logprob for t in (first.top_logprobs or [])} if first else {}
            if not top:
                raise RuntimeUnavailable(f"Ollama at {self.url} returned no log-probabilities for "
                                         f"{self.model!r}: the verifier cannot read its decisions.")
            tokens += out.prompt_eval_count or 0
            floor = min(top.values()) - 1.0
            margins.append(float(top.get(choices[0], floor) - top.get(choices[1], floor)))
        return SlotScores(margins, tokens)

    def close(self) -> None:
        self.client._client.close()
