"""Training and merging on a tiny model built in the test: the real trl/peft path, on CPU."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from builder.config import load_config
from builder.stages import merge, train

from .conftest import ROOT


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_llama_folder):
    """A run folder with a small data stage output (real CodiEsp + synthetic examples)."""
    from builder.stages.data import build

    run_dir = tmp_path_factory.mktemp("run")
    cfg = load_config(None, ["data.synthetic_train=24", "data.synthetic_validation=6",
                             "data.candidates=5", "data.tokenizer=none", "data.codiesp=none"])
    cfg.run_dir = str(run_dir)
    build.run(cfg)
    return run_dir


def _cfg(run_dir, base, *extra):
    cfg = load_config(None, ["train.max_steps=4", "train.eval_steps=2", "train.eval_examples=4",
                             "train.batch_size=2", "train.grad_accum=1", "train.max_length=512",
                             "lora.r=4", "lora.alpha=8", "model_kind=generative", *extra])
    cfg.run_dir, cfg.base_model = str(run_dir), str(base)
    return cfg


def test_lora_training_on_cpu_writes_adapter_curve_and_manifest(tiny_run, tiny_llama_folder):
    summary = train.run(_cfg(tiny_run, tiny_llama_folder))
    assert summary["quantization"] == "none" and summary["optim"] == "adamw_torch"
    assert summary["steps"] == 4 and summary["tokens_seen"] > 0 and summary["best_eval_loss"] > 0
    assert (tiny_run / "train/adapter/adapter_config.json").exists()
    assert (tiny_run / "train/loss.png").read_bytes()[:4] == b"\x89PNG"
    stage = json.loads((tiny_run / "manifest.json").read_text())["stages"]["train"]
    assert stage["inputs"]["data_sha256"] and stage["summary"]["tokens_per_second"] > 0
    assert "train/adapter/adapter_model.safetensors" in stage["outputs"]


def test_rerun_resumes_from_the_last_checkpoint(tiny_run, tiny_llama_folder):
    summary = train.run(_cfg(tiny_run, tiny_llama_folder, "train.max_steps=6"))
    assert summary["resumed_from"] and summary["resumed_from"].endswith("checkpoint-4")
    assert summary["steps"] == 6


@pytest.fixture(scope="module")
def answering_run(tiny_run, contract_tiny_model, tmp_path_factory):
    """A run whose adapter was trained (real steps) on the tiny model that follows the contract."""
    import shutil

    run_dir = tmp_path_factory.mktemp("merge-run")
    shutil.copytree(tiny_run / "data", run_dir / "data")
    train.run(_cfg(run_dir, contract_tiny_model))
    return run_dir


def _logits(model_dir, text, adapter=None):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
    ids = AutoTokenizer.from_pretrained(model_dir)(text, return_tensors="pt").input_ids
    with torch.inference_mode():
        return model.eval()(input_ids=ids).logits


def test_merge_folds_the_adapter_in_and_the_merged_model_answers(answering_run, contract_tiny_model):
    import torch

    from builder.answer_check import CHECK_NOTES

    out = merge.run(_cfg(answering_run, contract_tiny_model))  # a MergeError fails the test
    merged = answering_run / "merged"
    assert out["merged"] == str(merged)
    assert out["smoke"]["parse_mode"] == "json" and out["smoke"]["codes"] == ["I10"]
    files = {p.name for p in merged.iterdir()}
    # A whole model that loads without peft or the base, with its tokenizer and chat template.
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "chat_template.jinja"} <= files
    assert not files & {"adapter_config.json", "adapter_model.safetensors"}
    assert not [p for p in answering_run.iterdir() if p.name.startswith(".merged")]  # no temp left
    # Folded in: the merged model computes what base + adapter compute, which is not the base.
    merged_logits = _logits(merged, CHECK_NOTES[1])
    assert torch.allclose(merged_logits, _logits(contract_tiny_model, CHECK_NOTES[1],
                                                 answering_run / "train/adapter"), atol=1e-4)
    assert not torch.allclose(merged_logits, _logits(contract_tiny_model, CHECK_NOTES[1]), atol=1e-5)
    stage = json.loads((answering_run / "manifest.json").read_text())["stages"]["merge"]
    assert "merged/model.safetensors" in stage["outputs"] and stage["smoke"]["codes"] == ["I10"]


def test_merge_of_a_model_that_cannot_answer_says_so(tiny_run, tiny_llama_folder, tmp_path):
    import shutil

    shutil.copytree(tiny_run / "data", tmp_path / "data")
    train.run(_cfg(tmp_path, tiny_llama_folder, "train.max_steps=2"))
    with pytest.raises(merge.MergeError, match="does not follow the contract"):
        merge.run(_cfg(tmp_path, tiny_llama_folder))  # random weights cannot write the JSON
    assert (tmp_path / "merged/model.safetensors").exists()  # kept, to be looked at


def test_nf4_qlora_trains_on_cpu(tiny_run, tiny_llama_folder, tmp_path, monkeypatch):
    """`--set train.quantization=nf4` on a machine without CUDA: bitsandbytes' CPU kernels."""
    import shutil

    import bitsandbytes as bnb
    import torch
    from transformers import Trainer

    shutil.copytree(tiny_run / "data", tmp_path / "data")
    quantized = []
    real_train = Trainer.train

    def look_then_train(self, *args, **kwargs):  # the real training, on the model it was given
        quantized.extend(m for m in self.model.modules() if isinstance(m, bnb.nn.Linear4bit))
        return real_train(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train", look_then_train)
    summary = train.run(_cfg(tmp_path, tiny_llama_folder, "train.quantization=nf4",
                             "train.max_steps=2", "train.eval_steps=2"))
    assert summary["quantization"] == "nf4" and summary["steps"] == 2
    assert summary["optim"] == "paged_adamw_32bit"  # bitsandbytes' optimizer, as on CUDA
    assert summary["train_loss"] > 0 and summary["best_eval_loss"] > 0
    # Every linear layer of the 2 blocks (q, k, v, o, gate, up, down) held NF4 4-bit weights.
    assert len(quantized) == 2 * 7
    assert all(m.weight.quant_state.quant_type == "nf4" and m.weight.dtype == torch.uint8
               for m in quantized)
    adapter = tmp_path / "train/adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 4 and (adapter / "adapter_model.safetensors").stat().st_size > 0


def test_nf4_is_chosen_only_with_cuda():
    import torch

    assert train.resolve_quantization("auto") == ("nf4" if torch.cuda.is_available() else "none")
    with pytest.raises(train.TrainError, match="auto, nf4 or none"):
        train.resolve_quantization("int3")


def test_merge_without_adapter_says_what_to_do(tmp_path):
    cfg = load_config(None, [])
    cfg.run_dir = str(tmp_path)
    with pytest.raises(merge.MergeError, match="builder verifier"):  # the default model kind
        merge.run(cfg)
    cfg.model_kind = "generative"
    with pytest.raises(merge.MergeError, match="builder train"):
        merge.run(cfg)


def _train_cli(run_dir, base, *extra):
    args = [sys.executable, "-m", "builder", "train", "--run-dir", str(run_dir), "--set",
            f"base_model={base}", "--set", "train.eval_examples=4", "--set", "train.batch_size=2",
            "--set", "train.grad_accum=1", "--set", "train.max_length=512", "--set", "lora.r=4"]
    for item in extra:
        args += ["--set", item]
    return args


def test_killed_training_resumes_from_its_checkpoint(tiny_run, tiny_llama_folder, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run / "data", run_dir / "data")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(_train_cli(run_dir, tiny_llama_folder, "train.max_steps=400",
                                       "train.eval_steps=2"),
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ckpts = run_dir / "train" / "checkpoints"
    deadline = time.monotonic() + 300
    while not list(ckpts.glob("checkpoint-*")) and time.monotonic() < deadline:
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)  # what `kill` sends; Ctrl-C (SIGINT) is handled the same
    proc.wait(timeout=300)
    saved = sorted(int(p.name.split("-")[1]) for p in ckpts.glob("checkpoint-*"))
    assert saved and max(saved) < 400
    done = subprocess.run(_train_cli(run_dir, tiny_llama_folder, f"train.max_steps={max(saved) + 2}",
                                     "train.eval_steps=2"),
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((run_dir / "manifest.json").read_text())["stages"]["train"]["summary"]
    assert summary["resumed_from"].endswith(f"checkpoint-{max(saved)}")
    assert summary["steps"] == max(saved) + 2


def test_two_cpu_processes_through_accelerate_launch(tiny_run, tiny_llama_folder, tmp_path):
    import shutil

    run_dir = tmp_path / "ddp"
    shutil.copytree(tiny_run / "data", run_dir / "data")
    # `--multi_gpu` selects the torchrun launcher; without CUDA each process trains on the CPU
    # (gloo backend). `--cpu` would run a single process unless MPI is installed.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--multi_gpu",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", *_train_cli(run_dir, tiny_llama_folder, "train.max_steps=2",
                             "train.eval_steps=2")[2:]]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    stage = json.loads((run_dir / "manifest.json").read_text())["stages"]["train"]
    assert stage["summary"]["world_size"] == 2 and stage["summary"]["steps"] == 2


def test_examples_too_long_for_max_length_are_dropped_not_truncated(tiny_run, tiny_llama_folder, tmp_path):
    import shutil

    run_dir = tmp_path / "short"
    shutil.copytree(tiny_run / "data", run_dir / "data")
    with pytest.raises(train.TrainError, match="No training example fits"):
        train.run(_cfg(run_dir, tiny_llama_folder, "train.max_length=64"))


def test_hub_profile_fails_fast_offline(tmp_path):
    from .conftest import run_module

    started = time.monotonic()
    out = run_module("builder", "data", "--profile", "llama3-8b-qlora", "--run-dir", str(tmp_path),
                     env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert out.returncode == 1 and "offline" in out.stderr and "Traceback" not in out.stderr
    out = run_module("builder", "train", "--profile", "llama3-8b-qlora", "--run-dir", str(tmp_path),
                     env={"HF_HUB_OFFLINE": "1"})
    assert out.returncode == 1 and "Offline?" in out.stderr
    assert time.monotonic() - started < 120


def test_hub_profile_fails_fast_when_the_hub_does_not_answer(tmp_path):
    """No HF_HUB_OFFLINE, and a hub that accepts connections but never answers (what a dead
    network or a blocking firewall looks like): a clear message in seconds, not minutes of
    retries."""
    import socket

    silent_hub = socket.create_server(("127.0.0.1", 0))  # connections queue, nothing replies
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env["HF_ENDPOINT"] = f"http://127.0.0.1:{silent_hub.getsockname()[1]}"
    try:
        for stage, what in (("train", "huggingface-cli download meta-llama/Meta-Llama-3-8B-Instruct"),
                            ("data", "huggingface-cli download --repo-type dataset FiscaAI/")):
            started = time.monotonic()
            out = subprocess.run([sys.executable, "-m", "builder", stage, "--profile",
                                  "llama3-8b-qlora", "--run-dir", str(tmp_path)], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=300)
            seconds = time.monotonic() - started
            assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
            assert "hub is offline" in out.stderr and what in out.stderr
            assert "Retrying" not in out.stderr
            assert seconds < 30, f"{stage} took {seconds:.0f} s to say it is offline"
    finally:
        silent_hub.close()
    assert "--set base_model=DIR" in subprocess.run(
        [sys.executable, "-m", "builder", "train", "--profile", "llama3-8b-qlora", "--run-dir",
         str(tmp_path), "--set", "base_model=someone/not-cached"], cwd=ROOT,
        env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300).stderr


def test_answer_window_loss_equals_the_full_sequence_loss(tiny_llama_folder):
    """The builder computes logits only where answers are; the loss and its gradients must be
    exactly what the full-sequence loss gives (right-padded rows of different lengths)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from builder.stages.train import answer_window_loss

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama_folder),
                           LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    for name, p in model.named_parameters():  # LoRA B starts at zero: make the adapter matter
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    vocab = model.config.vocab_size
    ids = torch.randint(3, vocab, (2, 30))
    mask = torch.ones_like(ids)
    mask[1, 24:] = 0  # the second row is shorter (right padding)
    labels = torch.full_like(ids, -100)
    labels[0, 22:30] = ids[0, 22:30]
    labels[1, 19:24] = ids[1, 19:24]
    inputs = {"input_ids": ids, "attention_mask": mask, "labels": labels}

    full = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    full.backward()
    full_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    window, outputs = answer_window_loss(model, inputs)
    window.backward()
    assert outputs.logits.shape[1] == 30 - 18  # logits from the first labelled position on
    assert torch.allclose(window, full, atol=1e-6)
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert torch.allclose(p.grad, full_grads[n], atol=1e-6), n


def test_train_benchmark_compares_builder_train_with_plain_loops_on_the_same_examples(
        tiny_run, tiny_llama_folder, tmp_path):
    from builder.benchmarks import training as bench_train

    cfg = _cfg(tiny_run, tiny_llama_folder, "train.grad_accum=2")
    report = bench_train.run(cfg, steps=2, out_dir=str(tmp_path))
    rows = {r["label"]: r for r in report["contenders"]}
    builder_label = next(label for label in rows if label.startswith("builder train"))
    assert set(rows) == {"naive loop, padded to max_length", "naive loop, padded to longest",
                         builder_label}
    assert report["examples"] == 2 * 2 * 2
    # The same examples (same real tokens) through each; the padded loop pays for its padding.
    assert len({r["tokens"] for r in rows.values()}) == 1
    assert rows["naive loop, padded to max_length"]["padded_tokens"] == 8 * 512
    assert all(r["tokens_per_s"] > 0 for r in rows.values())
    assert rows[builder_label]["builder_speedup"] == 1.0
    assert json.loads((tmp_path / "train-benchmark.json").read_text())["contenders"] == report["contenders"]
    assert f"| {builder_label} |" in (tmp_path / "train-benchmark.md").read_text()
    assert not (tmp_path / ".train-bench").exists()


def test_checkpoints_of_other_inputs_are_never_resumed(tmp_path, capsys):
    # A retriever refitted since (other candidates) must not continue a run trained on the old ones.
    ckpts = tmp_path / "checkpoints"
    assert train.resumable_checkpoint(ckpts, {"train": [1, 2], "lr": 3e-4}) is None
    (ckpts / "checkpoint-10").mkdir()
    (ckpts / "checkpoint-10" / "trainer_state.json").write_text("{}")
    assert train.resumable_checkpoint(ckpts, {"train": [1, 2], "lr": 3e-4}).endswith("checkpoint-10")
    assert train.resumable_checkpoint(ckpts, {"train": [1, 3], "lr": 3e-4}) is None
    assert "starting afresh" in capsys.readouterr().out and not (ckpts / "checkpoint-10").exists()


def test_a_resumed_run_reports_the_mean_loss_of_every_step():
    # The trainer's own figure divides a resumed run's losses by all steps (6 of 50: 0.07).
    from builder.stages.train import mean_train_loss

    history = [{"step": s, "loss": 0.8} for s in range(1, 45)] + [{"step": 44, "eval_loss": 0.9}]
    history += [{"step": s, "loss": 0.5} for s in range(45, 51)]
    assert mean_train_loss(history, fallback=0.07) == round((44 * 0.8 + 6 * 0.5) / 50, 4)
    assert mean_train_loss([], fallback=0.31234) == 0.3123  # nothing logged: the trainer's figure
