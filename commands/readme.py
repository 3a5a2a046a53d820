"""`python -m commands.readme [--check] [PATH]`: keep README's command reference generated.

Rewrites the text between `<!-- commands:start -->` and `<!-- commands:end -->` with
`reference_markdown()`. With `--check` nothing is written and the exit status is 1 when the
block is stale (2 when the file or the markers are missing).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from commands.help import reference_markdown

START = "<!-- commands:start -->"
END = "<!-- commands:end -->"
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "README.md"


def replace_block(document: str, block: str) -> str:
    """`document` with the text between the markers replaced by `block`; ValueError if absent."""
    start = document.find(START)
    end = document.find(END, start + len(START)) if start != -1 else -1
    if start == -1 or end == -1:
        raise ValueError(f"markers {START} / {END} not found")
    return document[:start + len(START)] + "\n" + block + document[end:]


def current_block(document: str) -> str:
    """The text between the markers (without the newline after the start marker)."""
    start = document.index(START) + len(START)
    end = document.index(END, start)
    return document[start:end].removeprefix("\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m commands.readme", description=__doc__)
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--check", action="store_true", help="exit 1 if the block is stale")
    options = parser.parse_args(argv)
    try:
        document = options.path.read_text(encoding="utf-8")
        updated = replace_block(document, reference_markdown())
    except (OSError, ValueError) as exc:
        print(f"{options.path}: {exc}", file=sys.stderr)
        return 2
    if updated == document:
        return 0
    if options.check:
        print(f"{options.path}: the command reference is stale; run python -m commands.readme",
              file=sys.stderr)
        return 1
    options.path.write_text(updated, encoding="utf-8")
    print(f"{options.path}: command reference updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
