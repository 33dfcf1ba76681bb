"""Any Hugging Face causal LM (a merged model folder, the base model, or a hub id): greedy
decoding with the tokenizer's own chat template."""
from __future__ import annotations

import time

from . import Cancelled, Generation, ModelRequest, RuntimeUnavailable, ScoreRequest, SlotScores, cpu_has_amx_bf16


def slot_margins(model, ids: list[int], slots: list[int], choices: tuple[int, int]) -> list[float]:
    """logit(choices[0]) - logit(choices[1]) at each slot, one forward pass; the vocabulary is
    projected only at the slots. Shared by this runtime and the builder's verifier stage."""
    import torch

    if not slots:
        return []
    device = next(model.parameters()).device
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([ids], device=device), use_cache=False,
                    logits_to_keep=torch.tensor(slots, device=device))
        logits = out.logits[0][:, list(choices)].float()
    return (logits[:, 0] - logits[:, 1]).tolist()


def slot_margins_bf16(model, ids: list[int], slots: list[int], choices: tuple[int, int]) -> list[float]:
    """`slot_margins` for a model held in bf16: there the difference of two large logits keeps
    about one digit of the margin, so the difference of the two output rows is applied in fp32
    to the slots' hidden states (the same quantity: the output layer has no bias)."""
    import torch

    if not slots:
        return []
    device = next(model.parameters()).device
    with torch.inference_mode():
        hidden = model.model(input_ids=torch.tensor([ids], device=device), use_cache=False).last_hidden_state[0, slots]
        rows = model.get_output_embeddings().weight[list(choices)].float()
        return (hidden.float() @ (rows[0] - rows[1])).tolist()


def auto_dtype(device: str = "cpu") -> str:
    """bf16 on a CPU with AMX (its bf16 products run about 7x fp32; the verifier's margins move
    by about 0.01 of their spread), fp32 elsewhere: without AMX, torch's bf16 forward pass is no
    faster than llama.cpp's BF16 GGUF, and where bf16 is emulated it is slower than fp32."""
    return "bf16" if device == "cpu" and cpu_has_amx_bf16() else "fp32"


class TransformersRuntime:
    def __init__(self, model: str, threads: int | None = None, device: str = "cpu",
                 dtype: str = "fp32"):
        """`dtype`: "fp32" (the reference the exports are checked against), "bf16", or "auto"
        (`auto_dtype`: what this CPU computes fastest)."""
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:  # the app ships without torch
            raise RuntimeUnavailable("The transformers runtime needs torch and transformers "
                                     "(`pip install -e .[build]`). Use a GGUF model instead.") from exc
        self.dtype = auto_dtype(device) if dtype == "auto" else dtype
        if self.dtype not in ("fp32", "bf16"):
            raise RuntimeUnavailable(f"Unknown dtype {dtype!r} for the transformers runtime: use "
                                     "fp32, bf16 or auto.")
        if threads:
            torch.set_num_threads(threads)
        self.name = f"transformers {self.dtype}:{model}"
        started = time.perf_counter()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = AutoModelForCausalLM.from_pretrained(
                model, dtype=torch.bfloat16 if self.dtype == "bf16" else torch.float32)
        except (OSError, ValueError) as exc:
            raise RuntimeUnavailable(f"Cannot load the model at {model}: {exc}") from exc
        self.model.to(device).eval()
        self.device = device
        self.load_seconds = time.perf_counter() - started
        self._torch = torch
        # Stop at the end of the assistant turn (ChatML <|im_end|>) as well as the model's eos.
        stops = {self.tokenizer.eos_token_id}
        im_end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if isinstance(im_end, int) and im_end != self.tokenizer.unk_token_id:
            stops.add(im_end)
        self.stop_ids = sorted(i for i in stops if i is not None)

    def generate(self, request: ModelRequest) -> Generation:
        from transformers import StoppingCriteria, StoppingCriteriaList

        cancel = request.cancel

        class StopWhenCancelled(StoppingCriteria):  # checked after every token
            cancelled = False

            def __call__(self, input_ids, scores, **kwargs):
                self.cancelled = cancel is not None and cancel.is_set()
                return self.cancelled

        ids = self.tokenizer.apply_chat_template(request.messages, add_generation_prompt=True,
                                                 return_tensors="pt").to(self.device)
        stop = StopWhenCancelled()
        with self._torch.inference_mode():
            out = self.model.generate(ids, attention_mask=self._torch.ones_like(ids),
                                      max_new_tokens=request.max_tokens, do_sample=False,
                                      eos_token_id=self.stop_ids,
                                      pad_token_id=self.tokenizer.pad_token_id or self.stop_ids[0],
                                      stopping_criteria=StoppingCriteriaList([stop]))
        if stop.cancelled:
            raise Cancelled()
        return Generation(self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True),
                          int(ids.shape[1]), int(out.shape[1] - ids.shape[1]))

    def tokenize(self, text: str, bos: bool = False) -> list[int]:
        return self.tokenizer(text, add_special_tokens=bos).input_ids

    def score(self, request: ScoreRequest) -> SlotScores:
        if request.cancel is not None and request.cancel.is_set():
            raise Cancelled()
        capped = getattr(self.model.config, "final_logit_softcapping", None)  # logits not linear
        margins = slot_margins_bf16 if self.dtype == "bf16" and not capped else slot_margins
        return SlotScores(margins(self.model, request.ids, request.slots, request.choices),
                          len(request.ids))

    def close(self) -> None:
        self.model = None
