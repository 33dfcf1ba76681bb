"""`python -m desktop`: the coder's app. Its window arrives with issue 6."""
import sys


def main() -> int:
    print("error: the desktop app is not built yet; it arrives in issue 6. The code set is "
          "ready: try `python -m models.codeset search chest pain`.", file=sys.stderr)
    return 3


if __name__ == "__main__":
    raise SystemExit(main())
