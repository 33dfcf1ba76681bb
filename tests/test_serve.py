"""`python -m builder serve`: a real server process on 127.0.0.1, a real HTTP client."""
import subprocess
import sys

import httpx
import pytest

from builder.answer_check import CHECK_NOTES
from server import app as serve

from .conftest import ROOT, free_port, run_module, wait_for_http


@pytest.fixture(scope="module")
def server(tiny_bundle):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "builder", "serve", "--bundle", str(tiny_bundle.root),
                             "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/healthz", proc)
        with httpx.Client(base_url=url, timeout=120, trust_env=False) as client:
            yield client
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_suggest_returns_codes_with_descriptions_evidence_and_flags(server):
    response = server.post("/v1/suggest", json={"note": CHECK_NOTES[0]})
    assert response.status_code == 200, response.text
    body = response.json()
    first = body["suggestions"][0]
    assert first["code"] == "I10" and first["description"] == "Essential (primary) hypertension"
    start, end = first["evidence"]["start"], first["evidence"]["end"]
    assert CHECK_NOTES[0][start:end] == first["evidence"]["text"]
    assert first["flags"] == [] and body["edition"].startswith("ICD-10-CM FY2026")
    assert body["runtime"].startswith("llama.cpp:")


def test_health_and_openapi(server):
    health = server.get("/healthz").json()
    assert health["status"] == "ok" and health["runtime"].endswith(".gguf")
    spec = server.get("/openapi.json").json()
    assert {"/v1/suggest", "/v1/codes/{code}", "/v1/codes", "/healthz"} <= set(spec["paths"])
    assert server.get("/docs").status_code == 404  # no page that loads scripts from a CDN


def test_code_lookup_and_search(server):
    e119 = server.get("/v1/codes/e119").json()
    assert e119["code"] == "E11.9" and e119["billable"] is True and e119["parent"] == "E11"
    e11 = server.get("/v1/codes/E11").json()
    assert e11["billable"] is False and "E11.9" in e11["children"]
    assert server.get("/v1/codes/Z99.999").status_code == 404
    bad = server.get("/v1/codes/hello")
    assert bad.status_code == 422 and "code" in bad.json()["detail"].lower()
    hits = server.get("/v1/codes", params={"search": "type 2 diabetes mellitus", "limit": 5}).json()
    assert len(hits) == 5 and all(h["code"].startswith("E11") for h in hits)
    assert server.get("/v1/codes", params={"search": ""}).status_code == 422


def test_bad_notes_get_clear_errors_and_the_server_stays_up(server):
    empty = server.post("/v1/suggest", json={"note": "   "})
    assert empty.status_code == 422 and "empty" in empty.json()["detail"]
    binary = server.post("/v1/suggest", json={"note": "abc\x00def"})
    assert binary.status_code == 422 and "binary" in binary.json()["detail"]
    long_note = server.post("/v1/suggest", json={"note": "pain " * 50_000})
    assert long_note.status_code == 422 and "200,000" in long_note.json()["detail"]
    huge = server.post("/v1/suggest", content=b'{"note": "' + b"x" * (serve.MAX_BODY_BYTES + 10) + b'"}',
                       headers={"Content-Type": "application/json"})
    assert huge.status_code == 413 and "200,000 characters" in huge.json()["detail"]
    assert server.post("/v1/suggest", json={"text": "no note field"}).status_code == 422
    assert server.post("/v1/suggest", json={"note": CHECK_NOTES[0]}).status_code == 200


def test_serve_refuses_to_listen_beyond_this_machine_unasked(tmp_path):
    proc = run_module("builder", "serve", "--model", "retrieval", "--host", "0.0.0.0",
                      "--port", str(free_port()), timeout=60)
    assert proc.returncode == 1 and "--allow-remote-clients" in proc.stderr


def test_serve_without_a_bundle_or_model_says_what_to_run(tmp_path, tiny_bundle):
    proc = run_module("builder", "serve", "--bundle", str(tmp_path), timeout=60)
    assert proc.returncode == 1 and "make all" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_module("builder", "serve", "--bundle", str(tiny_bundle.root), "--model", "onnx", timeout=120)
    assert proc.returncode == 1 and "no onnx model" in proc.stderr and "builder export" in proc.stderr
