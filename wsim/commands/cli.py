"""``wsim`` command line: one sub-command per module in ``wsim/commands``.

Contract (docs/design.md): ``--json`` prints exactly one JSON object on stdout, logs go to stderr, bad
input exits 2 with one line naming the problem and no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys

from models.suggest import hint
from wsim.errors import ConfigError

# Each module defines ``register(subparsers)`` that adds its parser and sets ``func(args) -> dict``
# and ``human(result) -> str``.
COMMANDS = ("simulate", "gpu", "train", "compare", "sweep", "generate", "faults")


# argparse's refusal of a value outside ``choices`` (Python 3.11-3.13 wording): the list of every
# choice is replaced by the closest ones (models.suggest)
_INVALID_CHOICE = re.compile(r"^(?P<head>.*invalid choice: (?P<value>'.*?'|\S+)) \(choose from (?P<choices>.*)\)$")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse would print usage too)
        m = _INVALID_CHOICE.match(message)
        if m:
            choices = [c.strip().strip("'") for c in m["choices"].split(",")]
            message = f"{m['head']}; {hint(m['value'].strip(chr(39)), choices)}"
        raise _UsageError(f"{self.prog}: {message}")


class _UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="wsim", description="Cerebras weight-streaming cluster simulator")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"wsim.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"wsim.commands.{name}":
                continue  # not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        result = args.func(args)
    except _UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"wsim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wsim: interrupted", file=sys.stderr)
        return 130
    try:
        if getattr(args, "json", False):
            print(json.dumps(result, default=_jsonable))
        else:
            print(args.human(result))
        sys.stdout.flush()
    except BrokenPipeError:  # `wsim ... | head`: the reader left; not an error of ours
        sys.stdout = None
    if hasattr(args, "exit_status"):  # a command whose result can say it did not succeed (sweep)
        code, message = args.exit_status(result)
        if code:
            print(f"wsim: error: {message}", file=sys.stderr)
            return code
    return 0


def _jsonable(value):
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
