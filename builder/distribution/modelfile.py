"""The Ollama Modelfile for an exported GGUF: Go template matching the model's chat template,
its stop tokens, greedy decoding, and the contract's system prompt.

Ollama renders templates in Go's text/template; the model's own template is Jinja. We recognise
the chat formats our bases use (ChatML: SmolLM2, Qwen; Llama 3 headers; Gemma turns) and refuse others
rather than guess, since a wrong template silently ruins answers.
"""
from __future__ import annotations

from models.contract import SYSTEM_PROMPT
from models.errors import CoderError

CHATML_TEMPLATE = """{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""
LLAMA3_TEMPLATE = """<|begin_of_text|>{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>

{{ .Content }}<|eot_id|>
{{- end }}<|start_header_id|>assistant<|end_header_id|>

"""
GEMMA_TEMPLATE = """{{- range .Messages }}<start_of_turn>{{ if eq .Role "assistant" }}model{{ else }}user{{ end }}
{{ .Content }}<end_of_turn>
{{ end }}<start_of_turn>model
"""
CHAT_FORMATS = {
    "chatml": ("<|im_start|>", CHATML_TEMPLATE, ["<|im_end|>", "<|im_start|>"]),
    "llama3": ("<|start_header_id|>", LLAMA3_TEMPLATE, ["<|eot_id|>", "<|start_header_id|>"]),
    "gemma": ("<start_of_turn>", GEMMA_TEMPLATE, ["<end_of_turn>", "<start_of_turn>"]),
}


class UnknownChatFormat(CoderError, ValueError):
    pass


def chat_format(jinja_template: str) -> str:
    for name, (marker, _, _) in CHAT_FORMATS.items():
        if marker in jinja_template:
            return name
    raise UnknownChatFormat("The model's chat template is not ChatML, Llama 3 or Gemma; write the "
                            "Modelfile TEMPLATE by hand (https://ollama.com/blog/modelfile).")


def render_modelfile(gguf_ref: str, jinja_template: str, num_ctx: int = 4096,
                     kind: str = "generative") -> str:
    """`kind`: "verifier" says in the file that the app sends raw prompts (no template, no system
    prompt) and reads one token's log-probabilities, so TEMPLATE and SYSTEM serve chat only."""
    _, template, stops = CHAT_FORMATS[chat_format(jinja_template)]
    system = SYSTEM_PROMPT.replace('"""', '\\"\\"\\"')
    lines = ["# Ollama Modelfile for the ICD-10-CM coder. Create the model with:",
             "#   ollama create icd10-coder -f Modelfile"]
    if kind == "verifier":
        lines += ["# A verifier: the app sends it raw prompts (the note, then one line per candidate",
                  "# code; models/contract.py) and reads the top log-probabilities of one generated",
                  "# token (Ollama 0.12.11 or newer). TEMPLATE and SYSTEM below serve chat only."]
    lines += [f"FROM {gguf_ref}",
              f'TEMPLATE """{template}"""',
              f'SYSTEM """{system}"""',
              "PARAMETER temperature 0",
              "PARAMETER repeat_penalty 1.0",  # Ollama's default 1.1 changes greedy answers
              f"PARAMETER num_ctx {num_ctx}"]
    lines += [f'PARAMETER stop "{s}"' for s in stops]
    return "\n".join(lines) + "\n"
