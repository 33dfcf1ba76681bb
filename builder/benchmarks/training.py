"""`python -m builder benchmark --train`: trained tokens per second of `builder train` against a
plain training loop, on the same examples, model, LoRA and optimizer settings, one after another.

Contenders:
- "naive loop, padded to max_length": the textbook loop. Each batch is padded to the training
  length limit, the whole sequence goes through the vocabulary projection, the loss is masked.
- "naive loop, padded to longest": the same, padded only to the longest example of its batch.
- "builder train": trl's SFTTrainer as `builder train` sets it up (batches grouped by length,
  logits only where answers are: builder.train.answer_window_loss; bf16 compute where the CPU
  has it natively, see builder.train.precision). The plain loops stay in fp32, as written.

Counted: real tokens (no padding) of the examples trained on, over the wall time of the optimizer
steps. Every contender sees the same examples once (steps x batch x accumulation of them). All
run on the CPU, where the plain loops run, even on a machine with a GPU.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from builder.config import BuildConfig
from models.files import write_json_atomic, write_text_atomic


def _tokenized(tokenizer, examples) -> list[tuple[list[int], int]]:
    """(token ids, length of the prompt part) for each prompt-completion example."""
    out = []
    for ex in examples:
        ids = tokenizer.apply_chat_template(ex["prompt"] + ex["completion"], tokenize=True)
        prompt = tokenizer.apply_chat_template(ex["prompt"], tokenize=True, add_generation_prompt=True)
        ids = ids["input_ids"] if isinstance(ids, dict) else ids
        prompt = prompt["input_ids"] if isinstance(prompt, dict) else prompt
        out.append((list(ids), len(prompt)))
    return out


def _naive_loop(model, tokenized, tc, pad_id: int, pad_to: int | None) -> tuple[float, int, int]:
    """Seconds, real tokens and padded tokens of one pass of a plain loop over the examples."""
    import torch

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=tc.learning_rate)
    model.train()
    real = padded = 0
    micro = [tokenized[i:i + tc.batch_size] for i in range(0, len(tokenized), tc.batch_size)]
    started = time.perf_counter()
    for n, batch in enumerate(micro):
        width = pad_to or max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), pad_id)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for row, (tokens, prompt_len) in enumerate(batch):
            ids[row, :len(tokens)] = torch.tensor(tokens)
            mask[row, :len(tokens)] = 1
            labels[row, prompt_len:len(tokens)] = torch.tensor(tokens[prompt_len:])
            real += len(tokens)
        padded += ids.numel()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss / tc.grad_accum
        loss.backward()
        if (n + 1) % tc.grad_accum == 0 or n + 1 == len(micro):
            optimizer.step()
            optimizer.zero_grad()
    return time.perf_counter() - started, real, padded


def _builder_trainer(model, tokenizer, examples, cfg: BuildConfig, steps: int, bf16: bool, out: Path):
    from datasets import Dataset
    from transformers import TrainerCallback

    from builder.stages.train import _trainer_class, lora_config, sft_config

    clock: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            clock["start"] = time.perf_counter()

        def on_train_end(self, args, state, control, **kw):
            clock["end"] = time.perf_counter()

    args = sft_config(cfg.train, out / "checkpoints", bf16, "adamw_torch", use_cpu=True,
                      max_steps=steps, eval_strategy="no", save_strategy="no",
                      load_best_model_at_end=False, disable_tqdm=True, logging_steps=steps)
    trainer = _trainer_class()(model=model, args=args, train_dataset=Dataset.from_list(examples),
                               processing_class=tokenizer, peft_config=lora_config(cfg),
                               callbacks=[Clock()])
    trainer.train()
    return clock["end"] - clock["start"], int(trainer.state.num_input_tokens_seen)


def run(cfg: BuildConfig, steps: int = 2, out_dir: str | None = None) -> dict:
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from builder.base_model import ensure_base_model
    from builder.stages.train import TrainError, _fit_length, _load_examples, lora_config, precision

    tc = cfg.train
    run_dir = Path(cfg.run_dir)
    out = Path(out_dir) if out_dir else run_dir / "benchmark"
    base = ensure_base_model(cfg.base_model)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    ds, _ = _fit_length(_load_examples(run_dir / "data" / "train.jsonl", tc.seed), tokenizer, tc.max_length)
    n = steps * tc.batch_size * tc.grad_accum
    if len(ds) < n:
        raise TrainError(f"{len(ds)} training examples fit in max_length; the benchmark needs {n}.")
    examples = [{"prompt": ex["prompt"], "completion": ex["completion"]} for ex in ds.select(range(n))]
    tokenized = _tokenized(tokenizer, examples)

    def fresh_model():
        torch.manual_seed(tc.seed)
        return AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)

    rows = []
    for label, pad_to in (("naive loop, padded to max_length", tc.max_length),
                          ("naive loop, padded to longest", None)):
        seconds, real, padded = _naive_loop(get_peft_model(fresh_model(), lora_config(cfg)),
                                            tokenized, tc, tokenizer.pad_token_id, pad_to)
        rows.append({"label": label, "seconds": round(seconds, 2), "tokens": real,
                     "padded_tokens": padded, "tokens_per_s": round(real / seconds, 1)})
    bf16 = precision(tc.dtype, cuda=False)[1]
    scratch = out / ".train-bench"
    try:
        seconds, seen = _builder_trainer(fresh_model(), tokenizer, examples, cfg, steps, bf16, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rows.append({"label": "builder train" + (" (bf16 compute)" if bf16 else ""),
                 "seconds": round(seconds, 2), "tokens": seen,
                 "padded_tokens": None, "tokens_per_s": round(seen / seconds, 1)})
    builder_rate = rows[-1]["tokens_per_s"]
    for r in rows:
        r["builder_speedup"] = round(builder_rate / r["tokens_per_s"], 2)
    report = {"base_model": str(base), "examples": n, "optimizer_steps": steps,
              "batch_size": tc.batch_size, "grad_accum": tc.grad_accum, "max_length": tc.max_length,
              "threads": torch.get_num_threads(), "contenders": rows,
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "train-benchmark.json", report)
    write_text_atomic(out / "train-benchmark.md", markdown(report))
    return report


def markdown(report: dict) -> str:
    lines = [f"Training throughput: {report['examples']} examples ({report['optimizer_steps']} optimizer "
             f"steps of {report['batch_size']} x {report['grad_accum']}), max_length "
             f"{report['max_length']}, {report['threads']} threads, same examples for each.", "",
             "| training loop | seconds | real tokens | tokens/s | builder train is |",
             "|---|---:|---:|---:|---:|"]
    for r in report["contenders"]:
        lines.append(f"| {r['label']} | {r['seconds']:.1f} | {r['tokens']} | {r['tokens_per_s']} | "
                     f"{r['builder_speedup']}x |")
    return "\n".join(lines) + "\n"
