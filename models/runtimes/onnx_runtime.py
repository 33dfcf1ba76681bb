"""An exported ONNX folder (model.onnx with KV cache, tokenizer.json, the chat template) through
ONNX Runtime: greedy decoding, no torch and no transformers, so the app can ship it.

The prompt is rendered with the model's own Jinja chat template (as transformers does: sandboxed,
trim_blocks, lstrip_blocks) and tokenized without added special tokens, so the ids equal
`tokenizer.apply_chat_template(...)`; a test holds that.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import Cancelled, Generation, ModelRequest, RuntimeUnavailable, ScoreRequest, SlotScores


def is_onnx_folder(path: Path) -> bool:
    return path.is_dir() and (path / "model.onnx").exists()


class OnnxRuntime:
    def __init__(self, model: str, threads: int | None = None):
        folder = Path(model)
        if not is_onnx_folder(folder):
            raise RuntimeUnavailable(f"{folder} has no model.onnx: export one with "
                                     "`python -m builder export --format onnx`.")
        try:
            import onnxruntime as ort
            from jinja2.sandbox import ImmutableSandboxedEnvironment
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise RuntimeUnavailable("The ONNX runtime needs onnxruntime, tokenizers and jinja2 "
                                     "(`pip install -e .[app]`).") from exc
        started = time.perf_counter()
        self.name = f"onnx:{folder}"
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(folder / "model.onnx"), options,
                                                providers=["CPUExecutionProvider"])
            self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise RuntimeUnavailable(f"ONNX Runtime could not load {folder}: {exc}. The export may "
                                     "be incomplete or corrupt: run `python -m builder export` "
                                     "again.") from exc
        config = json.loads((folder / "tokenizer_config.json").read_text()) \
            if (folder / "tokenizer_config.json").exists() else {}
        template_file = folder / "chat_template.jinja"
        template = template_file.read_text() if template_file.exists() else config.get("chat_template")
        if not template:
            raise RuntimeUnavailable(f"{folder} has no chat template (chat_template.jinja).")
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        self.template = env.from_string(template)
        self.special = {k: config.get(k) for k in ("bos_token", "eos_token")}
        self.stop_ids = self._stop_ids(folder, config)
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.past_names = [n for n in self.inputs if n.startswith("past_key_values.")]
        self.output_names = ["logits"] + [n.replace("past_key_values.", "present.", 1)
                                          for n in self.past_names]
        first = self.inputs[self.past_names[0]] if self.past_names else None
        # past shapes are [batch, kv_heads, past_len, head_dim] with the two fixed dims known.
        self.kv_heads, self.head_dim = (first.shape[1], first.shape[3]) if first else (0, 0)
        self.float_type = np.float16 if first is not None and "float16" in first.type else np.float32
        self.load_seconds = time.perf_counter() - started

    def _stop_ids(self, folder: Path, config: dict) -> list[int]:
        stops = set()
        gen = folder / "generation_config.json"
        if gen.exists():
            eos = json.loads(gen.read_text()).get("eos_token_id")
            stops.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        for token in ("<|im_end|>", "<|eot_id|>", config.get("eos_token")):
            if isinstance(token, str) and self.tokenizer.token_to_id(token) is not None:
                stops.add(self.tokenizer.token_to_id(token))
        return sorted(stops)

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        text = self.template.render(messages=messages, add_generation_prompt=True,
                                    raise_exception=_raise, **self.special)
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def generate_ids(self, prompt: list[int], max_tokens: int, cancel=None) -> list[int]:
        feed = {n: np.zeros((1, self.kv_heads, 0, self.head_dim), dtype=self.float_type)
                for n in self.past_names}
        ids = np.array([prompt], dtype=np.int64)
        length = len(prompt)
        out: list[int] = []
        for _ in range(max_tokens):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            feed["input_ids"] = ids
            feed["attention_mask"] = np.ones((1, length), dtype=np.int64)
            if "position_ids" in self.inputs:
                feed["position_ids"] = np.arange(length - ids.shape[1], length, dtype=np.int64)[None]
            results = dict(zip(self.output_names, self.session.run(self.output_names, feed)))
            next_id = int(np.argmax(results["logits"][0, -1]))
            if next_id in self.stop_ids:
                break
            out.append(next_id)
            for name in self.past_names:
                feed[name] = results[name.replace("past_key_values.", "present.", 1)]
            ids = np.array([[next_id]], dtype=np.int64)
            length += 1
        return out

    def generate(self, request: ModelRequest) -> Generation:
        prompt = self.prompt_ids(request.messages)
        out = self.generate_ids(prompt, request.max_tokens, request.cancel)
        return Generation(self.tokenizer.decode(out, skip_special_tokens=True), len(prompt), len(out))

    def tokenize(self, text: str, bos: bool = False) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=bos).ids

    def score(self, request: ScoreRequest) -> SlotScores:
        """One pass over the ids with an empty cache; the exported graph returns every
        position's logits, of which the slots are read."""
        if request.cancel is not None and request.cancel.is_set():
            raise Cancelled()
        n = len(request.ids)
        feed = {name: np.zeros((1, self.kv_heads, 0, self.head_dim), dtype=self.float_type)
                for name in self.past_names}
        feed["input_ids"] = np.array([request.ids], dtype=np.int64)
        feed["attention_mask"] = np.ones((1, n), dtype=np.int64)
        if "position_ids" in self.inputs:
            feed["position_ids"] = np.arange(n, dtype=np.int64)[None]
        logits = self.session.run(["logits"], feed)[0][0]
        yes, no = request.choices
        rows = logits[request.slots]
        return SlotScores([float(v) for v in rows[:, yes] - rows[:, no]], n)

    def close(self) -> None:
        self.session = None


def _raise(message: str):
    raise ValueError(message)
