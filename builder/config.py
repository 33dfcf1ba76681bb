"""One typed config for every stage: defaults, a TOML file, then `--set section.key=value`."""
from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
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
class RetrieverConfig:
    install: bool = False  # also replace the retriever shipped in models/resources/


@dataclass
class BuildConfig:
    run_dir: str = "artifacts/default"
    base_model: str = "embedded:smollm2-135m-instruct"  # or an HF id / local folder
    data: DataConfig = field(default_factory=DataConfig)
    retriever: RetrieverConfig = field(default_factory=RetrieverConfig)

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


def load_config(toml_path: str | Path | None = None, overrides: list[str] | None = None) -> BuildConfig:
    cfg = BuildConfig()
    if toml_path:
        with open(toml_path, "rb") as fh:
            doc = tomllib.load(fh)

        def walk(prefix: str, table: dict):
            for k, v in table.items():
                key = f"{prefix}{k}"
                if isinstance(v, dict):
                    walk(key + ".", v)
                else:
                    _apply(cfg, key, v, from_text=False)
        walk("", doc)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        _apply(cfg, key.strip(), value.strip(), from_text=True)
    return cfg
