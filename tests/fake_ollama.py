"""A local HTTP server that follows Ollama's documented API (docs/api.md, Ollama >= 0.5.5) for
the endpoints we use, backed by a real llama.cpp model: no Ollama can be installed on the CI
machines. What it holds to, as Ollama does:

- POST /api/blobs/sha256:<hex> stores the body only if its sha256 is <hex> (else 400); HEAD tells
  whether a blob exists (200/404).
- POST /api/create needs `model` and `files` (or `from`) naming uploaded blobs; it streams JSON
  status lines ending in {"status": "success"} (or a single object when "stream": false).
- POST /api/show and /api/chat answer 404 {"error": "model '...' not found"} for unknown models.
- POST /api/chat streams JSON lines; `format` may be a JSON schema that constrains the answer;
  the last line has done=true, prompt_eval_count and eval_count.
- POST /api/generate with `raw` (the prompt as it is) answers one JSON object (stream false);
  with `logprobs` and `top_logprobs` (Ollama >= 0.12.11) it adds, per generated token,
  {"token", "logprob", "top_logprobs": [{"token", "logprob"}, ...]}.
- GET /api/version, GET /api/tags.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class FakeOllama:
    def __init__(self, blob_dir: Path, version: str = "0.6.5"):
        self.blob_dir = Path(blob_dir)
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.version = version
        self.models: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path), for assertions
        self.chat_bodies: list[dict] = []
        self.garbage = False  # answer /api/chat with lines that are not JSON
        self._llms: dict[str, object] = {}
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _llm(self, name: str):
        from models.runtimes.llamacpp_runtime import load_llama

        with self._lock:
            if name not in self._llms:
                blob = self.blob_dir / self.models[name]["files"][0].replace(":", "-")
                self._llms[name] = load_llama(blob, n_ctx=4096, n_threads=1, verbose=False)
            return self._llms[name]

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # streamed bodies end when the connection closes

            def log_message(self, *args):
                pass

            def _json(self, status: int, obj) -> None:
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _lines(self, objs) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.end_headers()
                for obj in objs:
                    line = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
                    self.wfile.write(line + b"\n")
                    self.wfile.flush()

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def do_HEAD(self):
                fake.requests.append(("HEAD", self.path))
                if self.path.startswith("/api/blobs/"):
                    digest = self.path.rsplit("/", 1)[1]
                    exists = (fake.blob_dir / digest.replace(":", "-")).exists()
                    self.send_response(200 if exists else 404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._json(404, {"error": "not found"})

            def do_GET(self):
                fake.requests.append(("GET", self.path))
                if self.path == "/api/version":
                    self._json(200, {"version": fake.version})
                elif self.path == "/api/tags":
                    self._json(200, {"models": [{"name": n, "model": n} for n in fake.models]})
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self):
                fake.requests.append(("POST", self.path))
                if self.path.startswith("/api/blobs/"):
                    return self._blob()
                try:
                    req = json.loads(self._body() or b"{}")
                except ValueError:
                    return self._json(400, {"error": "invalid JSON"})
                handler = {"/api/create": self._create, "/api/show": self._show,
                           "/api/chat": self._chat, "/api/generate": self._generate}.get(self.path)
                if handler is None:
                    return self._json(404, {"error": "not found"})
                handler(req)

            def _blob(self):
                digest = self.path.rsplit("/", 1)[1]
                data = self._body()
                if digest != "sha256:" + hashlib.sha256(data).hexdigest():
                    return self._json(400, {"error": "digest mismatch"})
                (fake.blob_dir / digest.replace(":", "-")).write_bytes(data)
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _create(self, req):
                name = req.get("model")
                if not name:
                    return self._json(400, {"error": "model is required"})
                files = req.get("files") or {}
                if not files and not req.get("from"):
                    return self._json(400, {"error": "neither 'from' or 'files' was specified"})
                for digest in files.values():
                    if not (fake.blob_dir / digest.replace(":", "-")).exists():
                        return self._json(400, {"error": f"blob {digest} not found"})
                fake.models[name] = {"files": list(files.values()), "template": req.get("template", ""),
                                     "system": req.get("system", ""),
                                     "parameters": req.get("parameters", {})}
                statuses = [{"status": "parsing GGUF"}]
                statuses += [{"status": f"using existing layer {d}"} for d in files.values()]
                statuses += [{"status": "writing manifest"}, {"status": "success"}]
                if req.get("stream", True):
                    self._lines(statuses)
                else:
                    self._json(200, statuses[-1])

            def _show(self, req):
                name = req.get("model") or req.get("name")
                if name not in fake.models:
                    return self._json(404, {"error": f"model '{name}' not found"})
                m = fake.models[name]
                params = "\n".join(f"{k} {v}" for k, vals in m["parameters"].items()
                                   for v in (vals if isinstance(vals, list) else [vals]))
                self._json(200, {"modelfile": f"FROM {m['files'][0]}", "parameters": params,
                                 "template": m["template"], "system": m["system"],
                                 "details": {"format": "gguf", "family": "llama"},
                                 "model_info": {}, "modified_at": "2026-11-28T00:00:00Z"})

            def _generate(self, req):
                from models.runtimes.llamacpp_runtime import load_llama

                name = req.get("model")
                if name not in fake.models:
                    return self._json(404, {"error": f"model '{name}' not found"})
                if not req.get("raw"):
                    return self._json(400, {"error": "this fake serves raw prompts only"})
                options = {**fake.models[name]["parameters"], **(req.get("options") or {})}
                top_n = int(req.get("top_logprobs") or 0) if req.get("logprobs") else 0
                with fake._lock:
                    key = name + "#logits"
                    if key not in fake._llms:  # llama-cpp-python needs logits_all for logprobs
                        blob = fake.blob_dir / fake.models[name]["files"][0].replace(":", "-")
                        fake._llms[key] = load_llama(blob, n_ctx=4096, n_threads=1,
                                                     logits_all=True, verbose=False)
                    out = fake._llms[key].create_completion(
                        req.get("prompt", ""), max_tokens=options.get("num_predict", 128),
                        temperature=options.get("temperature", 0.8),
                        repeat_penalty=options.get("repeat_penalty", 1.1), logprobs=top_n or None)
                choice = out["choices"][0]
                body = {"model": name, "response": choice["text"], "done": True, "done_reason": "stop",
                        "prompt_eval_count": out["usage"]["prompt_tokens"],
                        "eval_count": out["usage"]["completion_tokens"]}
                if top_n:
                    lp = choice["logprobs"]
                    body["logprobs"] = [
                        {"token": token, "logprob": float(value),
                         "top_logprobs": [{"token": t, "logprob": float(v)} for t, v in top.items()]}
                        for token, value, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"])]
                self._json(200, body)

            def _chat(self, req):
                import llama_cpp

                name = req.get("model")
                if name not in fake.models:
                    return self._json(404, {"error": f"model '{name}' not found"})
                fake.chat_bodies.append(req)
                if fake.garbage:
                    return self._lines([b"<html>502 Bad Gateway</html>"])
                # As Ollama: the model's parameters, overridden by the request's options, over
                # Ollama's defaults (temperature 0.8, repeat_penalty 1.1).
                options = {**fake.models[name]["parameters"], **(req.get("options") or {})}
                fmt = req.get("format")
                grammar = (llama_cpp.LlamaGrammar.from_json_schema(json.dumps(fmt), verbose=False)
                           if isinstance(fmt, dict) else None)
                llm = fake._llm(name)
                with fake._lock:  # one generation at a time, as one Ollama runner does
                    stream = llm.create_chat_completion(
                        req["messages"], grammar=grammar, stream=True,
                        temperature=options.get("temperature", 0.8),
                        repeat_penalty=options.get("repeat_penalty", 1.1),
                        max_tokens=options.get("num_predict", 128))
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-ndjson")
                    self.end_headers()
                    count = 0
                    try:
                        for chunk in stream:
                            text = chunk["choices"][0]["delta"].get("content") or ""
                            if not text:
                                continue
                            count += 1
                            self.wfile.write(json.dumps({
                                "model": name, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                "message": {"role": "assistant", "content": text},
                                "done": False}).encode() + b"\n")
                            self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        fake.cancelled_after = count  # the client hung up: stop generating
                        return
                    self.wfile.write(json.dumps({
                        "model": name, "message": {"role": "assistant", "content": ""},
                        "done": True, "done_reason": "stop",
                        "eval_count": count}).encode() + b"\n")

        return Handler
