import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def cs():
    from models import codeset

    return codeset.load()


@pytest.fixture(scope="session")
def embedded_codiesp():
    from builder.stages.data.codiesp import embedded_dir

    return embedded_dir()


@pytest.fixture
def small_codiesp(tmp_path, embedded_codiesp):
    """A CodiEsp-layout copy with a few real cases per split (fast end-to-end runs)."""
    out = tmp_path / "codiesp"
    for split, n in (("train", 6), ("dev", 3)):
        src = embedded_codiesp / split
        (out / split / "text_files_en").mkdir(parents=True)
        ids = sorted(p.stem for p in (src / "text_files_en").glob("*.txt"))[:n]
        for case_id in ids:
            shutil.copy(src / "text_files_en" / f"{case_id}.txt", out / split / "text_files_en")
        rows = [line for line in (src / f"{split}D.tsv").read_text().splitlines()
                if line.split("\t")[0] in ids]
        (out / split / f"{split}D.tsv").write_text("\n".join(rows) + "\n")
    return out


def run_module(*args, env=None, timeout=600):
    import subprocess

    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="session")
def tiny_llama_folder(tmp_path_factory):
    """A 2-layer Llama with the real SmolLM2 tokenizer and random weights: a real HF model folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from builder.base_model import load_tokenizer

    tok = load_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=4096, tie_word_embeddings=True,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def contract_tiny_model(tiny_llama_folder, tmp_path_factory):
    """The tiny Llama overfitted (a few seconds of real training) to answer the export check note
    through the contract: a small model that follows the contract, for export and runtime tests."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from builder.answer_check import CHECK_NOTES
    from models.contract import CodedItem, format_answer
    from models.pipeline import Pipeline
    from models.select import open_selector

    tok = AutoTokenizer.from_pretrained(tiny_llama_folder)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_folder, dtype=torch.float32)
    answer = format_answer([CodedItem("I10", "Essential hypertension")])
    pipeline = Pipeline(open_selector("retrieval"))
    batch = []
    for note in CHECK_NOTES:
        prompt = tok.apply_chat_template(pipeline.prompt_messages(note), add_generation_prompt=True)
        target = tok.encode(answer, add_special_tokens=False) + [tok.eos_token_id]
        labels = [-100] * len(prompt) + target
        batch.append((torch.tensor([prompt + target]), torch.tensor([labels])))
    torch.manual_seed(0)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(120):
        ids, labels = batch[step % len(batch)]
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
        if loss.item() < 0.01 and step >= len(batch) * 10:
            break
    model.eval()
    folder = tmp_path_factory.mktemp("contract-tiny")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def contract_tiny_gguf(contract_tiny_model, tmp_path_factory):
    """The contract-following tiny model exported through `builder export` as a Q8_0 GGUF."""
    import shutil

    from builder.config import BuildConfig
    from builder.stages import export

    run = tmp_path_factory.mktemp("tiny-gguf-run")
    shutil.copytree(contract_tiny_model, run / "merged")
    export.run(BuildConfig(run_dir=str(run), model_kind="generative"), ["gguf"], ["Q4_K_M"])
    return export.gguf_path(run, "Q4_K_M")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, proc=None, timeout: float = 120) -> None:
    """Until url answers (any HTTP status); fails early with the server's output if it died."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}:\n{proc.stdout.read()[-3000:]}")
        try:
            httpx.get(url, timeout=2, trust_env=False)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer in {timeout} s")


@pytest.fixture(scope="session")
def tiny_bundle(contract_tiny_gguf):
    """The tiny model's run as `make all` leaves it: retriever (the shipped ranker), data, train,
    merge and export recorded, and its coder bundle written by `builder bundle`."""
    from builder.config import BuildConfig
    from builder.manifest import record_stage
    from builder.stages import bundle
    from models import bundle as bundle_mod

    run = contract_tiny_gguf.parents[1]
    shipped = bundle_mod.embedded()
    fitted = run / "retriever" / bundle_mod.RETRIEVER_FILE
    fitted.parent.mkdir(exist_ok=True)
    shutil.copyfile(shipped.path(shipped.retriever.path), fitted)
    record_stage(run, "retriever", {}, {}, [fitted], 0.1, {"metrics": {
        "threshold": shipped.retriever.threshold, "fitted_on": shipped.retriever.fitted_on,
        "tuned_on": shipped.retriever.tuned_on}})
    record_stage(run, "data", {"codiesp": "embedded", "synthetic_train": 10}, {}, [], 0.1)
    record_stage(run, "train", {"base_model": "embedded:smollm2-135m-instruct", "lora": {"r": 4}}, {}, [],
                 0.1, {"summary": {"steps": 3, "train_examples": 12, "best_eval_loss": 0.5}})
    record_stage(run, "merge", {}, {}, sorted(p for p in (run / "merged").rglob("*") if p.is_file()), 0.1)
    bundle.run(BuildConfig(run_dir=str(run)))
    return bundle_mod.load(bundle.bundle_dir(run))
