"""Rows of a hub dataset such as FiscaAI/synth-ehr-icd10cm-prompt, as (note, raw codes).

Works the same on a local copy (a .jsonl/.json/.csv/.parquet file or a folder of them), which is
how the tests run: nothing is downloaded unless a hub id is given on a machine with network.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from models.contract import parse_answer
from models.errors import CoderError

NOTE_COLUMNS = ("user", "prompt", "note", "text", "ehr_text", "input", "clinical_note")
CODE_COLUMNS = ("codes", "completion", "icd10_codes", "icd_codes", "labels", "output", "icd10")
_LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


class HubDataError(CoderError, ValueError):
    pass


@dataclass
class HubRow:
    row_id: str
    note: str
    codes: list[str]


def hub_unreachable(timeout: float = 2.0) -> str | None:
    """Why the Hugging Face Hub cannot be used right now, or None when it answers. One short try:
    offline, huggingface_hub retries every file with backoff for about a minute before it
    gives up. Any HTTP answer, even an error status, means the hub is there."""
    import threading  # noqa: PLC0415

    import httpx  # noqa: PLC0415
    from huggingface_hub import constants  # noqa: PLC0415

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    failure: list[str] = ["no answer"]

    def knock():
        try:  # proxies from the environment, as huggingface_hub uses them
            httpx.head(constants.ENDPOINT, timeout=timeout)
            failure.clear()
        except httpx.HTTPError as exc:
            failure[:] = [f"{type(exc).__name__}: {exc}"]

    # In a thread: a stuck name lookup is not bound by httpx's timeout.
    thread = threading.Thread(target=knock, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    if thread.is_alive():
        return f"{constants.ENDPOINT} did not answer within {timeout:.0f} s"
    return f"{constants.ENDPOINT} cannot be reached: {failure[0]}" if failure else None


def _load(source: str, split: str):
    from datasets import load_dataset  # noqa: PLC0415 - heavy, only when a hub source is used

    path = Path(source)
    if path.exists():
        files = [path] if path.is_file() else sorted(
            p for p in path.rglob("*") if p.suffix in _LOCAL_FORMATS)
        if not files or files[0].suffix not in _LOCAL_FORMATS:
            raise HubDataError(f"{source}: no .jsonl, .json, .csv or .parquet files found.")
        return load_dataset(_LOCAL_FORMATS[files[0].suffix],
                            data_files=[str(f) for f in files], split="train")
    offline = ("HF_DATASETS_OFFLINE is set" if os.environ.get("HF_DATASETS_OFFLINE") == "1"
               else hub_unreachable())
    if offline:
        raise HubDataError(f"{source!r} is not a local path and the hub is offline ({offline}). "
                           "Download it on a machine with network (`huggingface-cli download "
                           f"--repo-type dataset {source} --local-dir DIR`) and pass the folder: "
                           "--set data.hub_dataset=DIR.")
    try:
        return load_dataset(source, split=split)
    except Exception as exc:  # noqa: BLE001 - datasets raises many kinds; all mean the same here
        raise HubDataError(f"Could not load dataset {source!r} (split {split!r}): {exc}. Check the "
                           "name and network, or pass a local copy.") from exc


def detect_columns(columns: list[str], explicit: str = "") -> tuple[str, str]:
    if explicit:
        note_col, _, codes_col = explicit.partition(",")
        missing = [c for c in (note_col, codes_col) if c not in columns]
        if missing:
            raise HubDataError(f"Columns {missing} not in the dataset; it has {columns}.")
        return note_col, codes_col
    note_col = next((c for c in NOTE_COLUMNS if c in columns), None)
    codes_col = next((c for c in CODE_COLUMNS if c in columns), None)
    if not note_col or not codes_col:
        raise HubDataError(
            f"Cannot tell which columns hold the note and the codes; the dataset has {columns}. "
            f"Expected a note column ({', '.join(NOTE_COLUMNS)}) and a codes column "
            f"({', '.join(CODE_COLUMNS)}); name them with --set data.hub_columns=NOTE,CODES.")
    return note_col, codes_col


def parse_codes(value) -> list[str]:
    """Codes from a list, a JSON string, a contract answer or free text ("E11.9, I10")."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            out += parse_codes(v) if not isinstance(v, str) else [v]
        return out
    if isinstance(value, dict):
        return [c.code for c in parse_answer(json.dumps(value)).items]
    text = str(value)
    parsed = parse_answer(text)
    if parsed.items:
        return [c.code for c in parsed.items]
    # Lower-case or comma-separated codes the answer parser does not salvage from prose.
    return [t for t in (p.strip() for p in text.replace(";", ",").split(",")) if t]


def read_rows(source: str, split: str = "train", limit: int = 0, columns: str = "") -> tuple[list[HubRow], dict]:
    dataset = _load(source, split)
    note_col, codes_col = detect_columns(list(dataset.column_names), columns)
    rows, stats = [], {"rows": 0, "rows_without_note": 0, "note_column": note_col,
                       "codes_column": codes_col}
    for i, rec in enumerate(dataset):
        if limit and i >= limit:
            break
        stats["rows"] += 1
        note = rec.get(note_col)
        if not isinstance(note, str) or not note.strip():
            stats["rows_without_note"] += 1
            continue
        rows.append(HubRow(f"hub-{i}", note, parse_codes(rec.get(codes_col))))
    return rows, stats
