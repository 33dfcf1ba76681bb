"""`python -m builder train`: LoRA fine-tuning with trl's SFTTrainer on the data stage's examples.

QLoRA (NF4 4-bit base, double quantization, paged AdamW) where CUDA is present; plain LoRA on
fp32 weights on CPU, where bitsandbytes' 4-bit kernels are ~3x slower (measured on a 2-core AVX2 machine).
Loss is on the answer only (prompt-completion examples), and the vocabulary projection is only
computed where answers are (see `answer_window_loss`): at 49k words it is a fifth of the model's
arithmetic per token, spent on ~900 prompt tokens for ~40 answer tokens. Batches are grouped by
length, and CPUs with native bf16 compute in it (`precision`). Checkpoints go to
<run>/train/checkpoints; running the stage again resumes from the last one, so an interrupted run
loses at most the steps since its last checkpoint (Ctrl-C and SIGTERM save one before stopping). The best checkpoint by
validation loss becomes <run>/train/adapter.

Several GPUs or machines: `accelerate launch -m builder train ...` (DDP by default; FSDP or
DeepSpeed through `accelerate config`, see README).
"""
from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path

from builder.config import BuildConfig
from models.errors import CoderError
from models.runtimes import cpu_has_native_bf16


class TrainError(CoderError, RuntimeError):
    pass


def resolve_quantization(requested: str) -> str:
    import torch

    if requested == "auto":
        return "nf4" if torch.cuda.is_available() else "none"
    if requested == "nf4" and not torch.cuda.is_available():
        # bitsandbytes does run NF4 on CPU, just slowly: allowed, but said.
        print("note: NF4 on CPU works but is about 3x slower than plain LoRA (quantization=none).")
    if requested not in ("nf4", "none"):
        raise TrainError(f"quantization must be auto, nf4 or none, not {requested!r}")
    return requested


def precision(name: str, cuda: bool | None = None):
    """(dtype of the loaded weights, whether to compute in bf16) for train.dtype.
    auto: bf16 weights on CUDA; on a CPU with native bf16, fp32 weights under bf16 autocast
    (the adapter and optimizer stay fp32); elsewhere fp32. `cuda`: default, whether it is there."""
    import torch

    if name == "auto":
        if torch.cuda.is_available() if cuda is None else cuda:
            return torch.bfloat16, True
        return torch.float32, cpu_has_native_bf16()
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    return dtype, dtype == torch.bfloat16


def _load_examples(path: Path, seed: int):
    from datasets import Dataset

    if not path.exists():
        raise TrainError(f"{path} does not exist: run `python -m builder data` first.")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]
    return Dataset.from_list(rows).shuffle(seed=seed)


def _fit_length(ds, tokenizer, max_length: int):
    """Drop examples longer than max_length: truncation would cut off the answer, the only part
    with a loss. Returns the kept examples and how many were dropped."""
    def length(ex):
        text = tokenizer.apply_chat_template(ex["prompt"] + ex["completion"], tokenize=False)
        return {"n_tokens": len(tokenizer(text, add_special_tokens=False).input_ids)}

    measured = ds.map(length)
    kept = measured.filter(lambda ex: ex["n_tokens"] <= max_length).remove_columns("n_tokens")
    return kept, len(ds) - len(kept)


# Settings that say how long to train: changing them resumes the same run ("train longer").
_HOW_LONG = frozenset({"time_budget_minutes", "max_steps", "epochs"})


def mean_train_loss(log_history: list[dict], fallback: float) -> float:
    """The mean loss of every logged step, resumed runs included (the trainer's own
    `training_loss` divides the resumed run's losses by all steps: 6 of 50 steps read 0.07)."""
    losses = {e["step"]: e["loss"] for e in log_history if "loss" in e and "step" in e}
    return round(sum(losses.values()) / len(losses), 4) if losses else round(fallback, 4)


def resumable_checkpoint(ckpt_dir: Path, inputs: dict) -> str | None:
    """The last checkpoint in `ckpt_dir` when it was trained on these same inputs, else None.

    Running a stage again resumes where it stopped, but only on what it started on: checkpoints
    made from other inputs (the retriever refitted, other examples, other settings; how long to
    train, _HOW_LONG, does not count) are removed, with a message, and training starts afresh.
    """
    import shutil

    from transformers.trainer_utils import get_last_checkpoint

    fingerprint = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()
    stamp = ckpt_dir / "inputs.sha256"
    if ckpt_dir.exists() and (not stamp.is_file() or stamp.read_text().strip() != fingerprint):
        if get_last_checkpoint(str(ckpt_dir)):
            print(f"{ckpt_dir}: checkpoints of other inputs (data, retriever or settings changed); "
                  "starting afresh.")
        shutil.rmtree(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint + "\n")
    last = get_last_checkpoint(str(ckpt_dir))
    if last:
        print(f"Resuming from {last}")
    return last


class _StopCallback:
    """Stops training with a checkpoint on Ctrl-C / SIGTERM, or when the time budget runs out."""

    def __new__(cls, budget_s: float):
        from transformers import TrainerCallback

        class StopCallback(TrainerCallback):
            def __init__(self):
                self.started = time.monotonic()
                self.reason = None
                self.previous = {}
                if threading.current_thread() is threading.main_thread():
                    for sig in (signal.SIGINT, signal.SIGTERM):
                        self.previous[sig] = signal.signal(sig, self._on_signal)

            def restore(self):
                for sig, handler in self.previous.items():
                    signal.signal(sig, handler)

            def _on_signal(self, signum, frame):
                self.reason = f"signal {signal.Signals(signum).name}"

            def on_step_end(self, args, state, control, **kwargs):
                if budget_s and time.monotonic() - self.started > budget_s and not self.reason:
                    self.reason = f"time budget of {budget_s / 60:.0f} min"
                if self.reason:
                    control.should_save = True
                    control.should_training_stop = True
                return control

        return StopCallback()


def answer_window_loss(model, inputs: dict, num_items_in_batch=None):
    """Causal-LM loss on the labelled tokens, with logits only from the first labelled position
    of the batch on (the answers sit at the end of each row). Equal to the full-logits loss."""
    import torch
    import torch.nn.functional as F

    labels = inputs["labels"]
    labelled = (labels != -100).any(dim=0).nonzero()
    start = max(int(labelled[0]) - 1, 0) if len(labelled) else labels.shape[1] - 1
    outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                    position_ids=inputs.get("position_ids"), use_cache=False,
                    logits_to_keep=labels.shape[1] - start)
    logits = outputs.logits[:, :-1].float()  # logits[:, j] predicts the token at start + j + 1
    target = labels[:, start + 1:].to(logits.device)
    total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                            ignore_index=-100, reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else (target != -100).sum()
    return total / torch.as_tensor(count, device=total.device).clamp(min=1), outputs


def _trainer_class():
    from trl import SFTTrainer

    class AnswerWindowSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss, outputs = answer_window_loss(model, inputs, num_items_in_batch)
            return (loss, outputs) if return_outputs else loss

    return AnswerWindowSFTTrainer


def sft_config(tc, output_dir: Path, bf16: bool, optim: str, **overrides):
    """trl's SFTConfig for a TrainConfig (also used by `builder benchmark --train`)."""
    import torch
    from trl import SFTConfig

    settings = dict(
        output_dir=str(output_dir), max_length=tc.max_length, completion_only_loss=True,
        packing=tc.packing, per_device_train_batch_size=tc.batch_size,
        per_device_eval_batch_size=tc.batch_size, gradient_accumulation_steps=tc.grad_accum,
        learning_rate=tc.learning_rate, warmup_ratio=tc.warmup_ratio, lr_scheduler_type="cosine",
        num_train_epochs=tc.epochs, max_steps=tc.max_steps, optim=optim,
        eval_strategy="steps", eval_steps=tc.eval_steps, save_strategy="steps",
        save_steps=tc.eval_steps, save_total_limit=2, load_best_model_at_end=True,
        metric_for_best_model="eval_loss", greater_is_better=False, logging_steps=1,
        report_to="none", seed=tc.seed, bf16=bf16, fp16=False,
        gradient_checkpointing=tc.gradient_checkpointing, group_by_length=tc.group_by_length,
        include_num_input_tokens_seen="non_padding",
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
        disable_tqdm=False,
    )
    return SFTConfig(**{**settings, **overrides})


def lora_config(cfg: BuildConfig):
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM")


def run(cfg: BuildConfig) -> dict:
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from builder.base_model import ensure_base_model
    from builder.manifest import record_stage
    from models.files import atomic_dir, sha256_file

    started = time.perf_counter()
    tc = cfg.train
    run_dir = Path(cfg.run_dir)
    out_dir = run_dir / "train"
    ckpt_dir = out_dir / "checkpoints"
    data_dir = run_dir / "data"
    quant = resolve_quantization(tc.quantization)
    base = ensure_base_model(cfg.base_model)
    dtype, bf16 = precision(tc.dtype)

    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
    except OSError as exc:
        raise TrainError(f"Cannot load the tokenizer of {base!r}: {exc}. Offline? Download the "
                         "model on a machine with network and give its folder as base_model, or "
                         "use the embedded default (profile cpu-default).") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model_kwargs = {"dtype": dtype}
    if quant == "nf4":
        model_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype if dtype != torch.float32 else torch.bfloat16)
        if torch.cuda.is_available():
            model_kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    try:
        model = AutoModelForCausalLM.from_pretrained(base, **model_kwargs)
    except OSError as exc:
        raise TrainError(f"Cannot load base model {base!r}: {exc}. Offline? Give a local folder "
                         "or use the embedded default (profile cpu-default).") from exc
    if quant == "nf4":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=tc.gradient_checkpointing)

    train_ds, dropped_train = _fit_length(
        _load_examples(data_dir / "train.jsonl", tc.seed), tokenizer, tc.max_length)
    if tc.max_train_examples:
        train_ds = train_ds.select(range(min(tc.max_train_examples, len(train_ds))))
    eval_ds, dropped_eval = _fit_length(
        _load_examples(data_dir / "validation.jsonl", tc.seed), tokenizer, tc.max_length)
    eval_ds = eval_ds.select(range(min(tc.eval_examples, len(eval_ds))))
    if not len(train_ds):
        raise TrainError(f"No training example fits in train.max_length={tc.max_length} tokens.")
    optim = tc.optim if tc.optim != "auto" else ("paged_adamw_32bit" if quant == "nf4" else "adamw_torch")
    args = sft_config(tc, ckpt_dir, bf16, optim)
    lora = lora_config(cfg)
    stop = _StopCallback(tc.time_budget_minutes * 60)
    trainer = _trainer_class()(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                               processing_class=tokenizer, peft_config=lora, callbacks=[stop])
    last = resumable_checkpoint(ckpt_dir, {
        "train": train_ds.to_list(),
        "settings": {k: v for k, v in asdict(tc).items() if k not in _HOW_LONG},
        "lora": asdict(cfg.lora), "base": str(base), "quantization": quant})
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=last)
    finally:
        stop.restore()
    train_seconds = time.perf_counter() - t0
    state = trainer.state
    summary = {
        "base_model": base, "quantization": quant, "optim": optim, "dtype": str(dtype),
        "bf16_compute": bf16,
        "steps": state.global_step, "max_steps": state.max_steps, "resumed_from": last,
        "stopped_early": stop.reason, "train_loss": mean_train_loss(state.log_history, result.training_loss),
        "best_eval_loss": state.best_metric, "best_checkpoint": state.best_model_checkpoint,
        "tokens_seen": int(state.num_input_tokens_seen),
        "tokens_per_second": round(state.num_input_tokens_seen / max(train_seconds, 1e-9), 1),
        "train_seconds": round(train_seconds, 1),
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if torch.cuda.is_available() else None,
        "world_size": trainer.args.world_size, "train_examples": len(train_ds),
        "eval_examples": len(eval_ds),
        "dropped_longer_than_max_length": {"train": dropped_train, "validation": dropped_eval},
    }
    if not trainer.is_world_process_zero():
        return summary
    # load_best_model_at_end put the best weights in trainer.model; save that adapter atomically.
    adapter = out_dir / "adapter"
    with atomic_dir(adapter) as tmp:
        trainer.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    history = [h for h in state.log_history]
    (out_dir / "log_history.json").write_text(json.dumps(history, indent=1))
    plot = plot_loss(out_dir / "loss.png", history)
    data_hash = hashlib.sha256(b"".join(
        sha256_file(data_dir / f).encode() for f in ("train.jsonl", "validation.jsonl"))).hexdigest()
    outputs = sorted(p for p in adapter.iterdir() if p.is_file()) + [plot, out_dir / "log_history.json"]
    record_stage(run_dir, "train", {"train": cfg.to_dict()["train"], "lora": cfg.to_dict()["lora"],
                                    "base_model": cfg.base_model},
                 {"base_model": base, "data_sha256": data_hash}, outputs,
                 time.perf_counter() - started, {"summary": summary})
    return summary


def plot_loss(path: Path, history: list[dict], ylabel: str = "loss (answer tokens)",
              title: str = "Fine-tuning loss") -> Path:
    from builder.plots import pyplot, save_png

    plt = pyplot()
    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train loss", alpha=0.7)
    if evals:
        ax.plot(*zip(*evals), "o-", label="validation loss")
    ax.set(xlabel="step", ylabel=ylabel, title=title)
    ax.legend()
    fig.tight_layout()
    return save_png(fig, path)
