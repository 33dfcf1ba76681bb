"""`python -m builder STAGE [options]`: each stage reads what the previous one wrote in the run
folder. `all` runs retriever -> verifier (or data -> train for
model_kind=generative) -> merge -> export -> bundle -> evaluate.

Every stage takes --profile, --config, --set KEY=VALUE and --run-dir; the rest of its options are
its own (`python -m builder STAGE --help`). An error the user can act on ends with
`error: STAGE: what to do` and status 1; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from builder.config import load_config
from models.errors import CoderError

DEFAULT_DEV = "codiesp:builder/corpora/codiesp/dev"


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="TOML file with [data], [train], [lora] sections")
    common.add_argument("--profile", default="cpu-default",
                        help="named starting point: cpu-default (default), cpu-full, llama3-8b-qlora")
    common.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. data.seed=7")
    common.add_argument("--run-dir", help="run folder (default artifacts/default)")
    return common


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m builder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    stages = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    common = [_common()]

    def stage(name: str, text: str) -> argparse.ArgumentParser:
        return stages.add_parser(name, parents=common, help=text, description=text)

    stage("data", "training and validation examples (CodiEsp, synthetic notes, a hub dataset)")
    stage("retriever", "fit the candidate ranker on CodiEsp train (choices out of fold)")
    stage("train", "LoRA / QLoRA fine-tuning of the generative model (trl SFTTrainer, peft)")
    stage("verifier", "the verifier (judges the retriever's candidates): its decision head on the "
                      "frozen base (verifier.method=head, cpu-default) or LoRA / QLoRA fine-tuning "
                      "(method=lora), and its stacker fitted on held-out train cases and synthetic notes")
    stage("merge", "adapter -> full-precision merged model (or the base cut to the verifier head's layer)")
    ex = stage("export", "merged model -> GGUF and ONNX, verified; Ollama Modelfile")
    ex.add_argument("--format", dest="formats", action="append", choices=("gguf", "onnx"),
                    help="what to export (repeatable; default both)")
    ex.add_argument("--quantize", action="append", metavar="TYPE",
                    help="GGUF type(s): Q4_K_M (default; a verifier also gets BF16 where this CPU has "
                         "native bf16), Q8_0, Q5_K_M, Q4_0, Q2_K, F16, BF16; repeat or comma-separate")
    ex.add_argument("--onnx", dest="onnx_types", action="append", choices=("fp32", "int8"),
                    help="ONNX variant(s) to keep (default both; int8 is quantized from fp32)")
    bd = stage("bundle", "gather the run's retriever and models into its coder bundle")
    bd.add_argument("--out", help="bundle folder (default <run>/bundle)")
    bd.add_argument("--retrieval-only", action="store_true",
                    help="the retriever alone (what the package ships in models/resources/bundle)")
    bd.add_argument("--default-system", choices=("auto", "model", "retrieval"),
                    help="what the app runs by default (auto: the verifier only where it beat "
                         "retrieval alone on its held-out train cases)")
    for name, text in (("evaluate", "the suggestion pipeline over a note set, scored"),
                       ("benchmark", "every runtime of a bundle on the same notes, side by side")):
        p = stage(name, text)
        p.add_argument("--data", default=DEFAULT_DEV,
                       help="codiesp:FOLDER, synthetic-val, clinic (the typical clinic notes), or a "
                            ".jsonl file (default: CodiEsp dev)")
        p.add_argument("--bundle", help="a coder bundle (default: the run's, else the newest)")
        p.add_argument("--limit", type=int, default=0, help="only the first N notes")
        p.add_argument("--out", help="output folder")
        p.add_argument("--max-tokens", type=int, default=384 if name == "evaluate" else 96,
                       help="answer length limit")
    ev = stages.choices["evaluate"]
    ev.add_argument("--system", default="retrieval",
                    help="`retrieval` (the bundle's ranker alone), `bundle` (its default system), "
                         "`base` (the base model), or a model: .gguf, ONNX folder, merged folder, "
                         "HF id, ollama:NAME, openai:URL#MODEL")
    ev.add_argument("--model", dest="system", help="same as --system MODEL")
    ev.add_argument("--allow-remote", action="store_true",
                    help="let notes go to an Ollama/OpenAI-compatible server on another computer")
    ev.add_argument("--candidates", type=int, default=20, help="candidate codes in the prompt")
    ev.add_argument("--no-candidates", action="store_true", help="zero-shot: no candidates in the prompt")
    ev.add_argument("--threads", type=int, default=0, help="CPU threads for the model runtime")
    ev.add_argument("--served-verifier", action="store_true",
                    help="the ollama:/openai: server serves the bundle's verifier GGUF: judge through "
                         "its server mode (one decision token per candidate, top log-probabilities)")
    ev.add_argument("--no-coding-rules", action="store_true",
                    help="code every supported mention (as CodiEsp was annotated): no dropping of "
                         "integral symptoms or of a generic code beside a specific one")
    bm = stages.choices["benchmark"]
    bm.add_argument("--sweep-threads", default="1,2",
                    help="llama.cpp threads, comma list of N or N+M (answer+prompt threads)")
    bm.add_argument("--only", action="append", help="only runtimes whose label contains this")
    bm.add_argument("--train", action="store_true", help="measure training instead")
    bm.add_argument("--train-steps", type=int, default=2, help="optimizer steps per training contender")
    rp = stage("report", "all evaluations of a run in one table and chart")
    rp.add_argument("--eval-dir", help="folder of evaluations (default <run>/eval)")
    rg = stage("register", "the bundle's GGUF into Ollama or LM Studio")
    rg.add_argument("target", choices=("ollama", "lmstudio"))
    rg.add_argument("--bundle", help="a coder bundle (default: the run's, else the newest)")
    rg.add_argument("--gguf", help="another GGUF: one of the bundle's (file name or type, e.g. Q8_0) or any file")
    rg.add_argument("--name", help="Ollama model name (default icd10-coder:q4_k_m)")
    rg.add_argument("--ollama-host", help="Ollama's URL (default OLLAMA_HOST or 127.0.0.1:11434)")
    rg.add_argument("--no-check", action="store_true", help="Ollama: skip answering the check note")
    rg.add_argument("--models-dir", help="LM Studio's models folder (default LMSTUDIO_MODELS_DIR "
                                         "or ~/.lmstudio/models)")
    rg.add_argument("--link", action="store_true", help="LM Studio: link the GGUF instead of copying it")
    from server.__main__ import add_arguments as server_arguments

    server_arguments(stage("serve", "the REST server (python -m server): /v1/suggest, /v1/codes, /healthz"))
    pb = stage("publish", "the bundle's models and a model card on the Hugging Face Hub")
    pb.add_argument("--bundle", help="a coder bundle (default: the run's, else the newest)")
    pb.add_argument("--repo-id", required=True, help="the Hub repository, USER/NAME")
    pb.add_argument("--out", help="the folder to upload (default <run>/publish)")
    pb.add_argument("--dry-run", action="store_true", help="build the folder and model card only")
    pb.add_argument("--private", action="store_true", help="create the repository as private")
    stage("all", "retriever, verifier (or data and train), merge, export, bundle, evaluate, report")
    return parser


def _export(cfg, args) -> dict:
    from builder.stages import export

    types = [t.strip() for q in (args.quantize or []) for t in q.split(",") if t.strip()]
    return export.run(cfg, args.formats, types or None, args.onnx_types)


def _register(cfg, args) -> dict:
    from builder.distribution import register
    from models.bundle import resolve

    kind = "generative"
    if args.gguf and Path(args.gguf).is_file():
        gguf = Path(args.gguf)  # any GGUF, in a bundle or not
    else:
        bundle = resolve(args.bundle, cfg.run_dir, newest=not args.run_dir)
        gguf = register.bundle_gguf(bundle, args.gguf)
        kind = "verifier" if bundle.verifier else "generative"
    if args.target == "ollama":
        return register.register_ollama(gguf, args.name, args.ollama_host, check=not args.no_check,
                                        kind=kind)
    return register.register_lmstudio(gguf, args.models_dir, link=args.link)


def _evaluate(cfg, args) -> dict:
    from builder.evaluation import evaluate

    return evaluate.run(cfg, args.data, args.system, args.out, args.limit, args.candidates,
                        args.no_candidates, args.max_tokens, args.threads, args.allow_remote,
                        bundle=args.bundle, coding_rules=not args.no_coding_rules,
                        served_verifier=args.served_verifier)


def _benchmark(cfg, args):
    if args.train:
        from builder.benchmarks import training as bench_train

        return bench_train.markdown(bench_train.run(cfg, args.train_steps, args.out))
    from builder.benchmarks import runtimes as benchmark

    return benchmark.markdown(benchmark.run(
        cfg, args.data, args.limit or 10, benchmark.parse_threads(args.sweep_threads),
        args.max_tokens, args.out, args.only, bundle=args.bundle))


def _all(cfg, args) -> str:
    from builder.evaluation import evaluate, report
    from builder.stages import bundle, merge, retriever, train, verifier
    from builder.stages.data import build

    model = ((("verifier", lambda: verifier.run(cfg)),) if cfg.model_kind == "verifier"
             else (("data", lambda: build.run(cfg)), ("train", lambda: train.run(cfg))))
    for name, step in (("retriever", lambda: retriever.run(cfg)), *model, ("merge", lambda: merge.run(cfg)),
                       ("export", lambda: export_default(cfg)), ("bundle", lambda: bundle.run(cfg)),
                       # The model the app runs by default, on real notes.
                       ("evaluate", lambda: evaluate.run(cfg, cfg.evaluate.data, "bundle",
                                                         limit=cfg.evaluate.limit,
                                                         max_tokens=cfg.evaluate.max_tokens))):
        print(f"== {name}", file=sys.stderr, flush=True)
        print(json.dumps(step(), indent=2, default=str), flush=True)
    return report.run(cfg.run_dir)["table"]


def export_default(cfg) -> dict:
    from builder.stages import export

    return export.run(cfg, None, None, None)


def _stage(module: str):
    """A stage whose only input is the config."""
    return lambda cfg, args: importlib.import_module(f"builder.{module}").run(cfg)


def _bundle(cfg, args) -> dict:
    from builder.stages import bundle

    if args.default_system:
        cfg.default_system = args.default_system
    return bundle.run(cfg, args.out, args.retrieval_only)


def _report(cfg, args) -> str:
    from builder.evaluation import report

    return report.run(cfg.run_dir, args.eval_dir)["table"]


def _publish(cfg, args) -> dict:
    from builder.distribution import publish
    from models.bundle import resolve

    return publish.publish(resolve(args.bundle, cfg.run_dir, newest=not args.run_dir), args.repo_id,
                           args.out or f"{cfg.run_dir}/publish", args.dry_run, args.private)


def _serve(cfg, args) -> None:
    from server.__main__ import run

    run(args, cfg.run_dir, newest=not args.run_dir)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides, args.profile)
    except (CoderError, OSError) as exc:
        print(f"error: config: {exc}", file=sys.stderr)
        return 2
    if args.run_dir:
        cfg.run_dir = args.run_dir

    calls = {"data": _stage("stages.data.build"), "retriever": _stage("stages.retriever"),
             "train": _stage("stages.train"), "verifier": _stage("stages.verifier"),
             "merge": _stage("stages.merge"), "export": _export,
             "bundle": _bundle, "evaluate": _evaluate, "benchmark": _benchmark, "report": _report,
             "register": _register, "serve": _serve, "publish": _publish, "all": _all}
    try:
        result = calls[args.stage](cfg, args)
    except CoderError as exc:
        print(f"error: {args.stage}: {exc}", file=sys.stderr)
        return 1
    if result is not None:
        print(result if isinstance(result, str) else json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
