"""`python -m builder STAGE`: data, train, merge, export, evaluate, register, serve, benchmark,
publish, or `all`. Each stage reads what the previous one wrote in the run folder."""
from __future__ import annotations

import argparse
import json
import sys

from .config import ConfigError, load_config

STAGES = ("data", "retriever", "report", "train", "merge", "export", "evaluate", "register", "serve", "benchmark",
          "publish", "all")


def _run(label: str, call, errors: tuple, show=None) -> int:
    """One stage: its result on stdout, or `error: LABEL: reason` on stderr and status 1."""
    try:
        result = call()
    except errors as exc:
        print(f"error: {label}: {exc}", file=sys.stderr)
        return 1
    print(show(result) if show else json.dumps(result, indent=2, default=str))
    return 0


def _export(cfg, args) -> int:
    from . import export  # noqa: PLC0415
    from .llama_cpp_tools import ConverterUnavailable  # noqa: PLC0415
    from .modelfile import UnknownChatFormat  # noqa: PLC0415

    types = [t.strip() for q in (args.quantize or []) for t in q.split(",") if t.strip()]
    if "safetensors" in (args.formats or []):
        print(f"error: export: the safetensors model is the merged one, already in "
              f"{cfg.run_dir}/merged; export writes gguf and onnx.", file=sys.stderr)
        return 2
    return _run("export", lambda: export.run(cfg, args.formats, types or None, args.onnx_types),
                (export.ExportError, ConverterUnavailable, UnknownChatFormat))


def _register(cfg, args) -> int:
    from pathlib import Path  # noqa: PLC0415

    from . import register  # noqa: PLC0415

    if args.target is None:
        print("error: register: say where: `register ollama` or `register lmstudio`.", file=sys.stderr)
        return 2
    def place() -> dict:
        gguf = Path(args.gguf) if args.gguf else register.default_gguf(cfg.run_dir)
        if not gguf.is_file():
            raise register.RegisterError(f"{gguf} does not exist.")
        if args.target == "ollama":
            return register.register_ollama(gguf, args.name, args.ollama_host, check=not args.no_check)
        return register.register_lmstudio(gguf, args.models_dir, link=args.link)
    return _run(f"register {args.target}", place, (register.RegisterError, OSError))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m builder", description=__doc__)
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("target", nargs="?", choices=("ollama", "lmstudio"),
                        help="register: where to register the GGUF")
    parser.add_argument("--config", help="TOML file with [data], [train], [lora] sections")
    parser.add_argument("--profile", default="cpu-default",
                        help="named starting point: cpu-default (default), llama3-8b-qlora")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config value, e.g. data.seed=7")
    parser.add_argument("--run-dir", help="run folder (default artifacts/default)")
    ev = parser.add_argument_group("evaluate")
    ev.add_argument("--data", default="codiesp:builder/corpora/codiesp/dev",
                    help="codiesp:FOLDER, synthetic-val, or a .jsonl file (default: CodiEsp dev)")
    ev.add_argument("--system", default=None,
                    help="`retrieval`, `base` (the base model), or a model (same as --model)")
    ev.add_argument("--model", default=None,
                    help="a .gguf file, an ONNX folder, a merged model folder or HF id, "
                         "ollama:NAME or openai:URL#MODEL")
    ev.add_argument("--allow-remote", action="store_true",
                    help="let notes go to an Ollama/OpenAI-compatible server on another computer")
    ev.add_argument("--limit", type=int, default=0, help="only the first N notes")
    ev.add_argument("--out", default=None, help="evaluate: output folder (default <run>/eval/<data>__"
                                                "<system>); publish: the folder (default <run>/publish)")
    ev.add_argument("--candidates", type=int, default=20, help="candidate codes in the prompt")
    ev.add_argument("--no-candidates", action="store_true", help="zero-shot: no candidates in the prompt")
    ev.add_argument("--max-tokens", type=int, default=None,
                    help="answer length limit (evaluate: 384, benchmark: 96)")
    ev.add_argument("--threads", type=int, default=0,
                    help="CPU threads for the model runtime (default: the runtime's own choice)")
    ev.add_argument("--eval-dir", default=None,
                    help="report: folder of evaluations to summarize (default <run>/eval)")
    ex = parser.add_argument_group("export")
    ex.add_argument("--format", dest="formats", action="append", choices=("gguf", "onnx", "safetensors"),
                    help="export: gguf and/or onnx (repeatable; default both); serve: the run's "
                         "gguf (default), onnx or safetensors (merged) model")
    ex.add_argument("--quantize", action="append", metavar="TYPE",
                    help="GGUF type(s): Q4_K_M (default), Q8_0, Q5_K_M, Q4_0, Q2_K, F16; repeat or "
                         "comma-separate for several")
    ex.add_argument("--onnx", dest="onnx_types", action="append", choices=("fp32", "int8"),
                    help="ONNX variant(s) to keep (default both; int8 is quantized from fp32)")
    rg = parser.add_argument_group("register")
    rg.add_argument("--gguf", default=None, help="the GGUF to register (default <run>/gguf/*-Q4_K_M.gguf)")
    rg.add_argument("--name", default=None, help="Ollama model name (default icd10-coder:q4_k_m)")
    rg.add_argument("--ollama-host", default=None, help="Ollama's URL (default OLLAMA_HOST or 127.0.0.1:11434)")
    rg.add_argument("--no-check", action="store_true", help="Ollama: skip answering the check note")
    rg.add_argument("--models-dir", default=None,
                    help="LM Studio's models folder (default LMSTUDIO_MODELS_DIR or ~/.lmstudio/models)")
    rg.add_argument("--link", action="store_true", help="LM Studio: link the GGUF instead of copying it")
    sv = parser.add_argument_group("serve")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8321, help="port (default 8321)")
    sv.add_argument("--allow-remote-clients", action="store_true",
                    help="listen on a non-loopback address (put a TLS proxy in front)")
    bm = parser.add_argument_group("benchmark")
    bm.add_argument("--sweep-threads", default="1,2",
                    help="llama.cpp threads, comma list of N or N+M (answer+prompt threads, e.g. "
                         "1,2,1+2); the largest is used for the other runtimes")
    bm.add_argument("--only", action="append", help="only runtimes whose label contains this (repeatable)")
    bm.add_argument("--train", action="store_true",
                    help="measure training instead: builder train vs a plain padded loop")
    bm.add_argument("--train-steps", type=int, default=2, help="optimizer steps per training contender")
    pb = parser.add_argument_group("publish")
    pb.add_argument("--repo-id", default=None, help="the Hub repository, USER/NAME")
    pb.add_argument("--dry-run", action="store_true", help="build the folder and model card only")
    pb.add_argument("--private", action="store_true", help="create the repository as private")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides, args.profile)
    except (ConfigError, OSError) as exc:
        print(f"error: config: {exc}", file=sys.stderr)
        return 2
    if args.run_dir:
        cfg.run_dir = args.run_dir
    if args.stage == "retriever":
        from . import retriever  # noqa: PLC0415

        print(json.dumps(retriever.run(cfg, install=cfg.retriever.install), indent=2))
        return 0
    if args.stage == "evaluate":
        from . import evaluate  # noqa: PLC0415
        from models.notes import NoteError  # noqa: PLC0415
        from models.runtimes import RuntimeUnavailable  # noqa: PLC0415

        system = args.model or args.system or "retrieval"
        return _run("evaluate", lambda: evaluate.run(
            cfg, args.data, system, args.out, args.limit, args.candidates, args.no_candidates,
            args.max_tokens or 384, args.threads, args.allow_remote),
            (evaluate.EvalDataError, RuntimeUnavailable, NoteError, ValueError))
    if args.stage == "report":
        from . import report  # noqa: PLC0415

        return _run("report", lambda: report.run(cfg.run_dir, args.eval_dir), (FileNotFoundError,),
                    show=lambda r: r["table"])
    if args.stage in ("train", "merge"):
        from . import merge, train  # noqa: PLC0415

        return _run(args.stage, lambda: train.run(cfg) if args.stage == "train" else merge.run(cfg),
                    (train.TrainError, merge.MergeError))
    if args.stage == "export":
        return _export(cfg, args)
    if args.stage == "register":
        return _register(cfg, args)
    if args.stage == "publish":
        from . import publish  # noqa: PLC0415

        if not args.repo_id:
            print("error: publish: give --repo-id USER/NAME.", file=sys.stderr)
            return 2
        return _run("publish", lambda: publish.publish(cfg.run_dir, args.repo_id, args.out,
                                                       args.dry_run, args.private),
                    (publish.PublishError,))
    if args.stage == "benchmark" and args.train:
        from . import bench_train, train  # noqa: PLC0415

        return _run("benchmark", lambda: bench_train.run(cfg, args.train_steps, args.out),
                    (train.TrainError,), show=bench_train.markdown)
    if args.stage == "benchmark":
        from . import benchmark  # noqa: PLC0415
        from models.runtimes import RuntimeUnavailable  # noqa: PLC0415

        return _run("benchmark", lambda: benchmark.run(
            cfg, args.data, args.limit or 10, benchmark.parse_threads(args.sweep_threads),
            args.max_tokens or 96, args.out, args.only),
            (ValueError, RuntimeUnavailable), show=benchmark.markdown)
    if args.stage == "serve":
        from . import serve  # noqa: PLC0415

        try:
            model = args.model or serve.default_model(cfg.run_dir, (args.formats or ["gguf"])[-1])
            serve.serve(model, args.host, args.port, args.allow_remote_clients, args.allow_remote)
        except serve.ServeError as exc:
            print(f"error: serve: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.stage in ("data", "all"):
        from .data import build  # noqa: PLC0415
        from .data.codiesp import CorpusError  # noqa: PLC0415
        from .data.hub import HubDataError  # noqa: PLC0415

        try:
            summary = build.run(cfg)
        except (CorpusError, HubDataError, ValueError) as exc:
            print(f"error: data: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(summary, indent=2))
        if args.stage == "data":
            return 0
        from . import merge, train  # noqa: PLC0415

        try:
            print(json.dumps(train.run(cfg), indent=2, default=str))
            print(json.dumps(merge.run(cfg), indent=2, default=str))
        except (train.TrainError, merge.MergeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        rc = _export(cfg, args)
        if rc:
            return rc
        from . import evaluate, report  # noqa: PLC0415
        from .export import DEFAULT_GGUF, gguf_path  # noqa: PLC0415

        from models.runtimes import RuntimeUnavailable  # noqa: PLC0415

        # The model the app runs by default, on real notes.
        try:
            metrics = evaluate.run(cfg, cfg.evaluate.data, str(gguf_path(cfg.run_dir, DEFAULT_GGUF)),
                                   limit=cfg.evaluate.limit, max_tokens=cfg.evaluate.max_tokens)
        except (evaluate.EvalDataError, RuntimeUnavailable) as exc:
            print(f"error: evaluate: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(metrics, indent=2))
        print(report.run(cfg.run_dir)["table"])
        return 0
    parser.error(f"unknown stage {args.stage}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
