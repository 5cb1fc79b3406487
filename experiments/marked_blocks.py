"""Generated blocks between HTML-comment markers in a Markdown file: read, check, rewrite.

Shared by ``experiments.readme_figures`` (README.md) and ``experiments.gpu_doc_tables``
(docs/gpu-model.md): ``cli`` gives both the same ``--write`` / ``--check`` / ``--print``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def block(begin: str, end: str, text: str) -> str:
    return f"{begin}\n{text}\n{end}"


def section(text: str, begin: str, end: str, where: str) -> str:
    """The block from ``begin`` to ``end`` inclusive; SystemExit naming the markers if absent."""
    if begin not in text or end not in text:
        raise SystemExit(f"{where} lacks the markers {begin!r} ... {end!r}")
    return text[text.index(begin):text.index(end) + len(end)]


def cli(argv, prog: str, description: str, path: Path, blocks) -> int:
    """``blocks``: a callable returning [(begin, end, text)], called once (it runs the code)."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", action="store_true", help=f"regenerate the blocks in {path.name}")
    g.add_argument("--check", action="store_true", help=f"exit 1 if a block in {path.name} is stale")
    g.add_argument("--print", action="store_true", help="print the blocks")
    args = p.parse_args(argv)
    new = [(b, e, block(b, e, t)) for b, e, t in blocks()]
    if args.print:
        print("\n\n".join(n for _, _, n in new))
        return 0
    text = path.read_text()
    stale = []
    for b, e, n in new:
        old = section(text, b, e, path.name)
        if old != n:
            stale.append((old, n))
            text = text.replace(old, n)
    if args.check:
        for old, n in stale:
            print(f"{path.name}: a generated block is stale: run {prog} --write\n--- file\n{old}\n--- code\n{n}",
                  file=sys.stderr)
        return 1 if stale else 0
    if stale:
        path.write_text(text)
    return 0
