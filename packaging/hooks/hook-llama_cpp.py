# llama-cpp-python loads libllama.so and libggml*.so with ctypes from llama_cpp/lib/, which
# PyInstaller's import analysis cannot see: collect them where llama_cpp looks for them.
from PyInstaller.utils.hooks import collect_data_files, collect_dynamic_libs

binaries = collect_dynamic_libs("llama_cpp")
datas = collect_data_files("llama_cpp")
