"""`python -m builder STAGE`: data, train, merge, export, evaluate, register, serve, benchmark,
publish, or `all`. Each stage reads what the previous one wrote in the run folder."""
from __future__ import annotations

import argparse
import json
import sys

from .config import ConfigError, load_config

STAGES = ("data", "train", "merge", "export", "evaluate", "register", "serve", "benchmark",
          "publish", "all")
_LATER = {
    "train": "issue 4 (QLoRA/LoRA training)", "merge": "issue 4 (adapter merge)",
    "export": "issue 5 (GGUF and ONNX export)", "evaluate": "issue 3 (evaluation)",
    "register": "issue 7 (Ollama and LM Studio)", "serve": "issue 7 (REST server)",
    "benchmark": "issue 9 (benchmarks)", "publish": "issue 7 (publishing)",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m builder", description=__doc__)
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--config", help="TOML file with [data] etc. sections")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config value, e.g. data.seed=7")
    parser.add_argument("--run-dir", help="run folder (default artifacts/default)")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except (ConfigError, OSError) as exc:
        print(f"error: config: {exc}", file=sys.stderr)
        return 2
    if args.run_dir:
        cfg.run_dir = args.run_dir
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
        print("error: the stages after `data` arrive in issues 3-5; `all` stops here for now.",
              file=sys.stderr)
        return 3
    print(f"error: `{args.stage}` is not built yet; it arrives in {_LATER[args.stage]}.",
          file=sys.stderr)
    return 3


if __name__ == "__main__":
    raise SystemExit(main())
