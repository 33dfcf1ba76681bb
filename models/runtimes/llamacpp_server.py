"""llama.cpp's OpenAI-compatible server (`llama_cpp.server`), its model loaded as the app loads
one (`safe_model_params`: no AMX kernels where they crash). Same arguments as `python -m
llama_cpp.server`, for example:

    python -m models.runtimes.llamacpp_server --model bundle/gguf/icd10-coder-Q4_K_M.gguf --port 8765
"""
from __future__ import annotations


def main() -> None:
    import llama_cpp
    from llama_cpp.server.__main__ import main as serve

    from .llamacpp_runtime import safe_model_params

    with safe_model_params(llama_cpp):
        serve()


if __name__ == "__main__":
    main()
