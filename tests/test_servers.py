"""Models behind servers: an OpenAI-compatible server (a real llama.cpp server on loopback) and
Ollama (a local server following Ollama's documented API, backed by llama.cpp; a real Ollama when
one is installed), registration with Ollama and LM Studio, and the privacy rule."""
import json
import shutil
import subprocess
import sys
import threading

import pytest

from builder.answer_check import CHECK_NOTES
from builder.distribution import register
from models.contract import ANSWER_SCHEMA, parse_answer
from models.pipeline import Pipeline
from models.runtimes import Cancelled, ModelRequest, RuntimeUnavailable, open_runtime
from models.select import open_selector

from .conftest import free_port, run_module, wait_for_http
from .fake_ollama import FakeOllama


@pytest.fixture(scope="module")
def llama_server(contract_tiny_gguf):
    """llama.cpp's server (`python -m models.runtimes.llamacpp_server`, which runs `llama_cpp.server`)
    on 127.0.0.1 serving the tiny contract model."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "models.runtimes.llamacpp_server", "--model", str(contract_tiny_gguf),
         "--model_alias", "icd10-tiny", "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", "4096", "--n_threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_for_http(f"{url}/models", proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def fake_ollama(tmp_path):
    with FakeOllama(tmp_path / "ollama-blobs") as server:
        yield server


def test_openai_runtime_codes_a_note_through_a_real_llama_cpp_server(llama_server):
    runtime = open_runtime(f"openai:{llama_server}#icd10-tiny")
    result = Pipeline(runtime, coding_rules=False).suggest(CHECK_NOTES[0])  # the model's answer alone
    assert result.codes == ["I10"]
    assert result.suggestions[0].evidence.text.lower().startswith("essential hypertension")
    # llama.cpp's server refuses response_format json_schema; the runtime fell back to
    # json_object with the schema, which it accepts.
    assert runtime.format_index == 1
    runtime.close()


def test_openai_runtime_finds_the_only_model_and_refuses_a_missing_one(llama_server):
    assert open_runtime(f"openai:{llama_server}").model == "icd10-tiny"
    with pytest.raises(RuntimeUnavailable, match="no model 'other'.*icd10-tiny"):
        open_runtime(f"openai:{llama_server}#other")


def test_openai_runtime_stops_when_cancelled(llama_server):
    runtime = open_runtime(f"openai:{llama_server}#icd10-tiny")
    cancel = threading.Event()
    cancel.set()
    pipeline = Pipeline(runtime)
    request = ModelRequest(pipeline.prompt_messages(CHECK_NOTES[0]), cancel=cancel)
    with pytest.raises(Cancelled):
        runtime.generate(request)
    # ... and the server is free for the next request.
    assert Pipeline(runtime, coding_rules=False).suggest(CHECK_NOTES[0]).codes == ["I10"]


class CancelAfter:
    """A cancel event the user 'presses' at the n-th check: each runtime checks once per token."""

    def __init__(self, n: int):
        self.n, self.checks = n, 0

    def is_set(self) -> bool:
        self.checks += 1
        return self.checks >= self.n


@pytest.mark.parametrize("kind", ["gguf", "transformers", "openai", "ollama"])
def test_every_runtime_stops_within_a_token_of_a_cancel(kind, request, contract_tiny_gguf,
                                                         contract_tiny_model, tmp_path):
    if kind == "gguf":
        runtime = open_runtime(str(contract_tiny_gguf))
    elif kind == "transformers":
        runtime = open_runtime(str(contract_tiny_model))
    elif kind == "openai":
        runtime = open_runtime(f"openai:{request.getfixturevalue('llama_server')}#icd10-tiny")
    else:
        ollama = request.getfixturevalue("fake_ollama")
        register.register_ollama(contract_tiny_gguf, host=ollama.url, check=False)
        runtime = open_runtime(f"ollama:{ollama.url}#icd10-coder:q4_k_m")
    messages = Pipeline(open_selector("retrieval")).prompt_messages(CHECK_NOTES[0])
    full = runtime.generate(ModelRequest(messages)).text
    assert parse_answer(full).codes == ["I10"] and len(full) >= 15  # an answer of several tokens...
    cancel = CancelAfter(3)
    with pytest.raises(Cancelled):
        runtime.generate(ModelRequest(messages, cancel=cancel))
    assert cancel.checks == 3  # ... stopped at the third token, not at the end
    assert runtime.generate(ModelRequest(messages)).text == full  # and still works
    runtime.close()


def test_evaluate_runs_on_an_openai_compatible_server(llama_server, tmp_path):
    data = tmp_path / "notes.jsonl"
    data.write_text("\n".join(json.dumps({"id": i, "note": note, "codes": ["I10"]})
                              for i, note in enumerate(CHECK_NOTES[:2])) + "\n")
    proc = run_module("builder", "evaluate", "--run-dir", str(tmp_path / "run"), "--data", str(data),
                      "--model", f"openai:{llama_server}#icd10-tiny", "--out", str(tmp_path / "eval"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "eval/metrics.json").read_text())
    assert metrics["n_notes"] == 2 and metrics["micro_precision"] > 0


def test_a_server_that_is_down_gets_a_clear_message():
    port = free_port()
    with pytest.raises(RuntimeUnavailable, match="No OpenAI-compatible server answers.*LM Studio"):
        open_runtime(f"openai:http://127.0.0.1:{port}/v1#m")
    with pytest.raises(RuntimeUnavailable, match="Ollama is not running"):
        open_runtime(f"ollama:http://127.0.0.1:{port}#m")


@pytest.mark.parametrize("spec", ["openai:http://10.20.30.40:1234/v1#m", "ollama:https://gpu.example.org#m"])
def test_a_remote_server_is_refused_without_opt_in(spec):
    with pytest.raises(RuntimeUnavailable, match="not on this computer.*PHI"):
        open_runtime(spec)


def test_register_ollama_uploads_creates_and_answers(contract_tiny_gguf, fake_ollama):
    result = register.register_ollama(contract_tiny_gguf, host=fake_ollama.url)
    assert result["name"] == "icd10-coder:q4_k_m" and result["uploaded"]
    assert result["check"]["codes"] == ["I10"]  # it answers through the contract, via Ollama
    model = fake_ollama.models["icd10-coder:q4_k_m"]
    assert model["template"].startswith("{{- range .Messages }}<|im_start|>")
    assert model["parameters"]["stop"] == ["<|im_end|>", "<|im_start|>"]
    assert model["parameters"]["temperature"] == 0 and model["parameters"]["repeat_penalty"] == 1.0
    chat = fake_ollama.chat_bodies[-1]
    assert chat["format"] == ANSWER_SCHEMA and chat["options"]["temperature"] == 0
    assert chat["options"]["repeat_penalty"] == 1.0
    # Registering again does not upload the 100 MB again.
    again = register.register_ollama(contract_tiny_gguf, host=fake_ollama.url, check=False)
    assert not again["uploaded"]
    assert [r for r in fake_ollama.requests if r[0] == "POST" and r[1].startswith("/api/blobs/")] \
        == [("POST", f"/api/blobs/{result['digest']}")]


def test_ollama_runtime_by_name_uses_ollama_host(contract_tiny_gguf, fake_ollama, monkeypatch):
    register.register_ollama(contract_tiny_gguf, name="coder:test", host=fake_ollama.url, check=False)
    monkeypatch.setenv("OLLAMA_HOST", fake_ollama.url.removeprefix("http://"))
    runtime = open_runtime("ollama:coder:test")
    assert Pipeline(runtime, coding_rules=False).suggest(CHECK_NOTES[0]).codes == ["I10"]
    with pytest.raises(RuntimeUnavailable, match="no model 'absent:latest'.*register ollama"):
        open_runtime("ollama:absent:latest")


def test_ollama_garbage_and_old_versions_get_clear_messages(contract_tiny_gguf, fake_ollama):
    register.register_ollama(contract_tiny_gguf, host=fake_ollama.url, check=False)
    runtime = open_runtime(f"ollama:{fake_ollama.url}#icd10-coder:q4_k_m")
    fake_ollama.garbage = True
    with pytest.raises(RuntimeUnavailable, match="not JSON lines"):
        Pipeline(runtime).suggest(CHECK_NOTES[0])
    fake_ollama.version = "0.5.4"
    with pytest.raises(register.RegisterError, match="0.5.4.*too old.*0.5.5"):
        register.register_ollama(contract_tiny_gguf, host=fake_ollama.url)


def test_register_cli_ollama_and_when_ollama_is_down(contract_tiny_gguf, fake_ollama):
    ok = run_module("builder", "register", "ollama", "--gguf", str(contract_tiny_gguf),
                    "--ollama-host", fake_ollama.url, "--name", "cli:q4")
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "ollama: success" in ok.stdout and "cli:q4" in fake_ollama.models
    down = run_module("builder", "register", "ollama", "--gguf", str(contract_tiny_gguf),
                      "--ollama-host", f"127.0.0.1:{free_port()}")
    assert down.returncode == 1 and "Ollama is not running" in down.stderr


def test_register_lmstudio_copies_or_links_and_never_moves(contract_tiny_gguf, tmp_path):
    models = tmp_path / "lmstudio-models"
    result = register.register_lmstudio(contract_tiny_gguf, str(models))
    placed = models / "icd10-coder/icd10-coder-GGUF" / contract_tiny_gguf.name
    assert result["path"] == str(placed) and result["how"] == "copied"
    assert placed.read_bytes() == contract_tiny_gguf.read_bytes()
    assert contract_tiny_gguf.is_file()
    assert register.register_lmstudio(contract_tiny_gguf, str(models))["how"] == "already there"
    linked = register.register_lmstudio(contract_tiny_gguf, str(tmp_path / "other"), link=True)
    assert linked["how"] in ("hard link", "symbolic link")
    proc = run_module("builder", "register", "lmstudio", "--gguf", str(contract_tiny_gguf),
                      env={"LMSTUDIO_MODELS_DIR": str(tmp_path / "env-models")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "env-models/icd10-coder/icd10-coder-GGUF" / contract_tiny_gguf.name).is_file()
    assert "lms load icd10-coder/icd10-coder-GGUF" in proc.stdout


@pytest.mark.skipif(shutil.which("ollama") is None, reason="no ollama binary on PATH")
def test_real_ollama_registers_and_answers(contract_tiny_gguf):
    result = register.register_ollama(contract_tiny_gguf, name="icd10-coder-test:q4_k_m")
    assert result["check"]["codes"] == ["I10"]
