"""`python -m models.codeset E11.9` prints a record; `... search WORDS` ranks codes."""
from __future__ import annotations

import argparse
import json
import sys

from . import CodeSetError, load


def _print_record(rec) -> None:
    print(f"{rec.code}  {rec.description}")
    print(f"  {rec.edition}; {rec.kind}; {'billable' if rec.billable else 'NOT billable'}")
    if rec.ancestors:
        print(f"  parents: {' < '.join(rec.ancestors)}")
    if rec.children:
        print(f"  children: {', '.join(rec.children[:20])}{' ...' if len(rec.children) > 20 else ''}")
    for label, values in (("inclusion terms", rec.inclusion_terms), ("includes", rec.includes),
                          ("Excludes1", rec.excludes1), ("Excludes2", rec.excludes2),
                          ("use additional code", rec.use_additional_code),
                          ("code first", rec.code_first), ("code also", rec.code_also)):
        for v in values:
            print(f"  {label}: {v}")
    for char, meaning in rec.seven_chr_def.items():
        print(f"  7th character {char}: {meaning}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    argv = [a for a in argv if a != "--json"]
    if argv and argv[0] == "search":
        parser = argparse.ArgumentParser(prog="python -m models.codeset search")
        parser.add_argument("words", nargs="+")
        parser.add_argument("--limit", type=int, default=10)
        parser.add_argument("--billable", action="store_true", help="only billable codes")
        args = parser.parse_args(argv[1:])
        hits = load().search(" ".join(args.words), limit=args.limit, billable_only=args.billable)
        if as_json:
            print(json.dumps([h.__dict__ for h in hits], indent=2))
        elif not hits:
            print("No code matches those words. Try fewer or more general words.", file=sys.stderr)
            return 1
        for rank, h in enumerate(hits if not as_json else [], 1):
            flag = "" if h.billable else "  (not billable)"
            print(f"{rank:>2}. {h.code:<9} {h.description}{flag}")
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m models.codeset",
        description="Look up ICD-10-CM FY2026 codes. `search WORDS...` ranks codes by words.")
    parser.add_argument("codes", nargs="+", help="codes in any spelling: E11.9, e119")
    args = parser.parse_args(argv)
    cs = load()
    records, status = [], 0
    for code in args.codes:
        try:
            records.append(cs.record(code))
        except CodeSetError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
    if as_json:
        out = [r.to_dict() for r in records]
        print(json.dumps(out[0] if len(out) == 1 else out, indent=2))
    else:
        for r in records:
            _print_record(r)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
