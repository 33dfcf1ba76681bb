"""`python -m server [--bundle DIR] [--model M]`: serve a coder bundle on 127.0.0.1:8321.

Without --bundle: the newest bundle under artifacts/ (or $ICD10_CODER_ARTIFACTS). --model picks
another of its models (gguf, onnx, safetensors, a variant such as Q8_0, or retrieval) or any
model the runtimes take (a .gguf file, ollama:NAME, openai:URL#MODEL).
"""
from __future__ import annotations

import argparse
import sys

from models.errors import CoderError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m server", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The server's options (`python -m builder serve` takes the same)."""
    p.add_argument("--bundle", help="a coder bundle (default: the run's, else the newest)")
    p.add_argument("--model", help="run this instead of the bundle's default model: a bundle format "
                                   "(gguf, onnx, safetensors), retrieval, a file, ollama:NAME or "
                                   "openai:URL#MODEL")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8321, help="port (default 8321)")
    p.add_argument("--allow-remote-clients", action="store_true",
                   help="listen on a non-loopback address (put a TLS proxy in front)")
    p.add_argument("--allow-remote", action="store_true",
                   help="let notes go to an Ollama/OpenAI-compatible server on another computer")


def run(args, run_dir: str | None = None, newest: bool = True) -> None:
    from models.bundle import resolve

    from .app import check_listen, serve

    check_listen(args.host, args.allow_remote_clients)  # before anything loads
    serve(resolve(args.bundle, run_dir, newest=newest), args.model, args.host, args.port,
          args.allow_remote_clients, args.allow_remote)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        run(args)
    except CoderError as exc:
        print(f"error: serve: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
