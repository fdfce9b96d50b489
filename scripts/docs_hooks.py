"""MkDocs hook: `<!-- semsam-help COMMAND -->` in a page becomes that command's current --help text.

The CLI page therefore always shows what `semsam COMMAND --help` prints; `mkdocs build --strict` fails on a
command that does not exist.
"""

from __future__ import annotations

import argparse
import os
import re

MARKER = re.compile(r"<!-- semsam-help ?([a-z-]*) -->")
WIDTH = "110"


def _parsers() -> dict[str, argparse.ArgumentParser]:
    from semsam.cli.main import build_parser

    root = build_parser()
    commands = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    return {"": root, **commands.choices}


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ANN001 - MkDocs' hook signature
    if not MARKER.search(markdown):
        return markdown
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH  # argparse wraps to the terminal width: fix it so the page is stable
    try:
        parsers = _parsers()

        def help_text(match: re.Match) -> str:
            name = match.group(1)
            if name not in parsers:
                raise ValueError(f"{page.file.src_path}: no command {name!r}; commands: {', '.join(sorted(parsers))}")
            return f"```text\n{parsers[name].format_help().rstrip()}\n```"

        return MARKER.sub(help_text, markdown)
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
