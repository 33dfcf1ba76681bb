"""One typed config for every stage: defaults, a TOML file, then `--set section.key=value`."""
from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from models.errors import CoderError


class ConfigError(CoderError, ValueError):
    pass


@dataclass
class DataConfig:
    codiesp: str = "embedded"  # folder with train/ and dev/ in the CodiEsp layout, or "none"
    synthetic_train: int = 800
    synthetic_validation: int = 100
    hub_dataset: str = ""  # hub id or local file/folder (FiscaAI/synth-ehr-icd10cm-prompt)
    hub_split: str = "train"
    hub_limit: int = 0  # 0: all rows
    hub_columns: str = ""  # "NOTE_COLUMN,CODES_COLUMN" when detection is not enough
    validation_fraction: float = 0.1  # for sources without their own validation split
    candidates: int = 20  # candidate codes shown in each prompt
    tokenizer: str = "base"  # "base" (the base model's), an HF id/folder, or "none"
    seed: int = 13


@dataclass
class LoraConfigSection:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str = "all-linear"


@dataclass
class TrainConfig:
    quantization: str = "auto"  # auto (nf4 on CUDA, none on CPU) | nf4 | none
    max_length: int = 1280  # tokens per example; longer ones are left out (counted), never cut
    epochs: float = 1.0
    max_steps: int = -1  # overrides epochs when > 0
    time_budget_minutes: float = 0.0  # stop cleanly (with a checkpoint) after this long; 0: off
    batch_size: int = 2
    grad_accum: int = 4
    learning_rate: float = 2e-4
    warmup_ratio: float = 0.05
    optim: str = "auto"  # auto: paged_adamw_32bit with nf4, adamw_torch otherwise
    eval_steps: int = 20
    eval_examples: int = 48  # validation examples scored during training (a fixed, seeded subset)
    max_train_examples: int = 0  # 0: all
    gradient_checkpointing: bool = False
    packing: bool = False
    group_by_length: bool = True  # batches of similar length: less padding computed for nothing
    dtype: str = "auto"  # auto (bf16 on CUDA and on CPUs with native bf16, else fp32) | float32 | bfloat16
    seed: int = 13


@dataclass
class VerifierConfig:
    """`builder verifier`: the model as the judge of the retriever's candidates."""
    candidates: int = 40  # candidates judged per note (the ranker's best, listed by code)
    max_note_tokens: int = 512  # note tokens read in training (the pipeline reads up to 1536)
    holdout_fraction: float = 0.2  # train cases never trained on: the stacker and threshold
    # Synthetic notes the ranker never saw, judged beside those cases: the stacker's threshold is
    # the best for the mean of the two kinds of note, as the ranker's is. 0: CodiEsp alone.
    holdout_synthetic: int = 150
    epochs: float = 1.0
    max_steps: int = -1  # overrides epochs when > 0
    time_budget_minutes: float = 0.0  # stop cleanly with what was learned; 0: off
    batch_size: int = 1
    grad_accum: int = 8
    learning_rate: float = 3e-4
    positive_weight: float = 2.0  # about 1 candidate in 8 is right: weigh the yes slots up
    # Learn what the ranker lacks: the loss reads the verifier's margin added to the ranker's
    # out-of-fold logit, so the model is pushed only where the ranker is wrong or unsure. Off: in
    # 25 CPU minutes it added nothing either (README, "A residual verifier").
    residual: bool = False
    max_cases: int = 0  # 0: every train case
    # "lora": fine-tune the model through the slot loss (above). "head": keep the base frozen,
    # cut it after the best of `head_layers` (chosen out of fold) and fit only the decision
    # head, the " yes" row of its output layer, on every train case (builder/stages/verifier_head.py).
    method: str = "lora"
    head_layers: str = "12,15,18,21,24"
    head_components: int = 256  # principal components of the hidden state the head reads
    head_l2: float = 0.03
    # Synthetic notes (after the `holdout_synthetic` ones) read beside the train cases to fit the
    # head: they carry the coding rules CodiEsp's case reports rarely show. 0: CodiEsp alone.
    head_synthetic: int = 300


@dataclass
class EvaluateConfig:
    """What `builder all` measures at its end: the default GGUF on real notes."""
    data: str = "codiesp:builder/corpora/codiesp/dev"
    limit: int = 0  # 0: every note
    max_tokens: int = 384


@dataclass
class BuildConfig:
    run_dir: str = "artifacts/default"
    base_model: str = "embedded:smollm2-135m-instruct"  # or "embedded:gemma3-270m", an HF id, a folder
    # verifier: the model judges the retriever's candidates (`builder verifier`); generative: it
    # writes the codes it keeps (`builder data`, then `train`).
    model_kind: str = "verifier"
    # What the bundle runs by default: "auto" (the verifier where it beat retrieval alone on the
    # held-out train cases it was judged on, else retrieval alone), "model" or "retrieval".
    default_system: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraConfigSection = field(default_factory=LoraConfigSection)
    train: TrainConfig = field(default_factory=TrainConfig)
    verifier: VerifierConfig = field(default_factory=VerifierConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _coerce(value: str, typ):
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        typ = next(t for t in typing.get_args(typ) if t is not type(None))
    if typ is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"expected true/false, got {value!r}")
    try:
        return typ(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"expected {typ.__name__}, got {value!r}") from exc


def _apply(obj, key: str, value, from_text: bool) -> None:
    *path, name = key.split(".")
    target = obj
    for part in path:
        if not hasattr(target, part) or not dataclasses.is_dataclass(getattr(target, part)):
            raise ConfigError(f"unknown config section {part!r} in {key!r}")
        target = getattr(target, part)
    hints = typing.get_type_hints(type(target))
    if name not in hints:
        known = ", ".join(f.name for f in dataclasses.fields(target))
        raise ConfigError(f"unknown config key {key!r}; known here: {known}")
    setattr(target, name, _coerce(value, hints[name]) if from_text else value)


MODEL_KINDS = ("verifier", "generative")

# Named starting points; a TOML file and --set overrides apply on top.
PROFILES: dict[str, dict] = {
    # The embedded default: SmolLM2-135M on a 2-core CPU, `builder all` in about 30 minutes.
    "cpu-default": {
        "base_model": "embedded:smollm2-135m-instruct",
        "data": {"synthetic_train": 800, "synthetic_validation": 100, "candidates": 20},
        "train": {"quantization": "auto", "max_length": 1280, "max_steps": 60,
                  "time_budget_minutes": 20.0, "batch_size": 2, "grad_accum": 4,
                  "learning_rate": 4e-4, "eval_steps": 20, "eval_examples": 24},
        # The decision head on the frozen base: it adds to the ranker where 25 CPU minutes of
        # LoRA did not (README, "The verifier"). The LoRA settings serve cpu-full.
        "verifier": {"method": "head", "candidates": 40, "max_note_tokens": 512, "epochs": 1.0,
                     "time_budget_minutes": 25.0, "batch_size": 1, "grad_accum": 8,
                     "learning_rate": 3e-4},
        # No LoRA dropout on CPU: its masks cost a quarter of a verifier step (profiled: 222 ->
        # 292 tokens/s without), and under one epoch there is nothing for it to regularize.
        "lora": {"dropout": 0.0},
        # `all` ends by scoring the default GGUF on 100 CodiEsp dev notes (~5 min on 2 cores).
        "evaluate": {"limit": 100, "max_tokens": 96},
    },
    # The seed's recipe on a GPU: Llama 3 8B Instruct, NF4 QLoRA, the hub dataset.
    "llama3-8b-qlora": {
        "base_model": "meta-llama/Meta-Llama-3-8B-Instruct",
        "data": {"hub_dataset": "FiscaAI/synth-ehr-icd10cm-prompt", "synthetic_train": 2000,
                 "synthetic_validation": 200, "candidates": 20},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
        "train": {"quantization": "nf4", "optim": "paged_adamw_32bit", "max_length": 512,
                  "epochs": 1.0, "batch_size": 4, "grad_accum": 4, "learning_rate": 2e-4,
                  "eval_steps": 100, "eval_examples": 200, "gradient_checkpointing": True,
                  "dtype": "bfloat16"},
        # The same verifier as on CPU, reading whole notes, over several epochs.
        "verifier": {"candidates": 40, "max_note_tokens": 1536, "epochs": 3.0, "batch_size": 4,
                     "grad_accum": 2, "learning_rate": 2e-4},
    },
}


def _merged(base: dict, changes: dict) -> dict:
    return {**base, **{k: _merged(base.get(k, {}), v) if isinstance(v, dict) else v
                       for k, v in changes.items()}}


# The embedded default with the LoRA verifier and no time limit: one whole epoch over every
# training case (50 steps, about 29 minutes of training on 2 cores with AVX512-BF16), and the
# evaluation on all of dev. Everything else as cpu-default.
PROFILES["cpu-full"] = _merged(PROFILES["cpu-default"], {
    "train": {"time_budget_minutes": 0.0},
    "verifier": {"method": "lora", "time_budget_minutes": 0.0},
    "evaluate": {"limit": 0},
})


def load_config(toml_path: str | Path | None = None, overrides: list[str] | None = None,
                profile: str | None = None) -> BuildConfig:
    cfg = BuildConfig()

    def walk(prefix: str, table: dict):
        for k, v in table.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict):
                walk(key + ".", v)
            else:
                _apply(cfg, key, v, from_text=False)

    if profile:
        if profile not in PROFILES:
            raise ConfigError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
        walk("", PROFILES[profile])
    if toml_path:
        with open(toml_path, "rb") as fh:
            walk("", tomllib.load(fh))
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        _apply(cfg, key.strip(), value.strip(), from_text=True)
    if cfg.model_kind not in MODEL_KINDS:
        raise ConfigError(f"model_kind must be one of {', '.join(MODEL_KINDS)}, not {cfg.model_kind!r}")
    return cfg
