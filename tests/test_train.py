"""Training and merging on a tiny model built in the test: the real trl/peft path, on CPU."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from builder import merge, train
from builder.config import load_config

from .conftest import ROOT


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_llama_folder):
    """A run folder with a small data stage output (real CodiEsp + synthetic examples)."""
    from builder.data import build

    run_dir = tmp_path_factory.mktemp("run")
    cfg = load_config(None, ["data.synthetic_train=24", "data.synthetic_validation=6",
                             "data.candidates=5", "data.tokenizer=none", "data.codiesp=none"])
    cfg.run_dir = str(run_dir)
    build.run(cfg)
    return run_dir


def _cfg(run_dir, base, *extra):
    cfg = load_config(None, ["train.max_steps=4", "train.eval_steps=2", "train.eval_examples=4",
                             "train.batch_size=2", "train.grad_accum=1", "train.max_length=512",
                             "lora.r=4", "lora.alpha=8", *extra])
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


def test_merge_folds_the_adapter_in_and_the_smoke_answer_parses(tiny_run, tiny_llama_folder):
    cfg = _cfg(tiny_run, tiny_llama_folder)
    try:
        out = merge.run(cfg)
    except merge.MergeError as exc:  # random weights cannot write JSON: the check must say so
        assert "does not follow the contract" in str(exc)
        assert (tiny_run / "merged/model.safetensors").exists()
        return
    assert out["smoke"]["parse_mode"] in ("json", "repaired")


def test_nf4_is_chosen_only_with_cuda():
    import torch

    assert train.resolve_quantization("auto") == ("nf4" if torch.cuda.is_available() else "none")
    with pytest.raises(train.TrainError, match="auto, nf4 or none"):
        train.resolve_quantization("int3")


def test_merge_without_adapter_says_what_to_do(tmp_path):
    cfg = load_config(None, [])
    cfg.run_dir = str(tmp_path)
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
