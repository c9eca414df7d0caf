"""The README's excerpt of the demo's output, generated from a real run.

``python -m orchestrator.demo.excerpt`` (``make demo-excerpt``) runs ``saverzoo demo`` (or reads an
output captured before, ``--output FILE``) and writes the queries' part of what it printed between
the README's markers ``<!-- demo-output:begin -->`` and ``<!-- demo-output:end -->``. The demo's
tables are laid out for 100 columns, so the excerpt is what a reader of the README would see.

``header_differences`` compares the columns of the tables of two outputs command by command, those
shown and those left out to fit (the README's excerpt comes from the full zoo, a test's demo from a
few models: their rows differ, and so may what fits, but not what each table holds).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

from orchestrator.demo import WIDTH

BEGIN = "<!-- demo-output:begin -->"
END = "<!-- demo-output:end -->"
PROMPT = "$ saverzoo "
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
RULE = re.compile(r" *-+( +-+)*")  # the dashes under a table's headers, one run a column


def excerpt(output: str) -> str:
    """The demo's output from its first query on: the tables, the picture, what to type next."""
    lines = [ANSI.sub("", line).rstrip() for line in output.splitlines()]
    first = next((i for i, line in enumerate(lines) if line.startswith(PROMPT)), None)
    if first is None:
        raise ValueError("the demo's output holds no query (no line starts with '$ saverzoo ')")
    return "\n".join(lines[first:]).strip("\n")


def with_excerpt(readme: str, text: str) -> str:
    """The README with ``text`` as the console block between its markers."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the README has no {BEGIN} ... {END} block")
    block = f"{BEGIN}\n```console\n{text}\n```\n"
    return readme[:start] + block + readme[end:]


def readme_excerpt(readme: str) -> str:
    """The text of the README's block (without its console fence)."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the README has no {BEGIN} ... {END} block")
    inside = readme[start + len(BEGIN) : end].strip("\n").splitlines()
    return "\n".join(line for line in inside if not line.startswith("```"))


def table_headers(text: str) -> dict[str, list[frozenset[str]]]:
    """Command -> the columns of each table printed under it: those shown (a header wraps at
    spaces: its words within the dashes of its rule, line by line, up to the blank line under the
    title) and those the table's note says were left out to fit."""
    tables: dict[str, list[frozenset[str]]] = {}
    command = ""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(PROMPT):
            command = line
        elif RULE.fullmatch(line):
            spans = [m.span() for m in re.finditer(r"-+", line)]
            above: list[str] = []
            for previous in reversed(lines[:i]):
                if not previous.strip() or previous.startswith(PROMPT):
                    break
                above.insert(0, previous)
            shown = {" ".join(" ".join(h[a:b].split()) for h in above).strip() for a, b in spans}
            tables.setdefault(command, []).append(frozenset(shown | _left_out(lines[i + 1 :])))
    return tables


def _left_out(after: list[str]) -> set[str]:
    """The columns the note under a table names as left out (the note may wrap)."""
    end = next((i for i, line in enumerate(after) if not line.strip()), len(after))
    note = re.search(r"left out at \d+ columns: (.*?) \(--wide", " ".join(after[:end]))
    return set(note[1].split(", ")) if note else set()


def header_differences(output: str, readme: str) -> list[str]:
    """How the tables of the README's excerpt and of a demo's ``output`` differ in their columns,
    one line per command (nothing: the same columns)."""
    expected, printed = table_headers(readme_excerpt(readme)), table_headers(excerpt(output))
    if not expected:
        return ["the README's excerpt holds no table: run `make demo-excerpt`"]
    return [
        f"{command}: the README's tables hold {_named(columns)}, the demo's "
        f"{_named(printed.get(command, []))}"
        for command, columns in expected.items()
        if printed.get(command) != columns
    ]


def _named(tables: list[frozenset[str]]) -> str:
    return "; ".join(", ".join(sorted(columns)) for columns in tables) or "none"


def demo_output(workdir: Path | None = None) -> str:
    """What ``saverzoo demo`` prints (its progress and warnings stay on standard error)."""
    command = [sys.executable, "-m", "orchestrator", "demo"]
    if workdir is not None:
        command += ["--workdir", str(workdir)]
    env = {**os.environ, "COLUMNS": str(WIDTH)}
    run = subprocess.run(command, env=env, text=True, stdout=subprocess.PIPE)
    if run.returncode != 0:
        raise SystemExit(f"error: saverzoo demo failed (exit {run.returncode}); see above")
    return run.stdout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--output", type=Path, help="A demo's captured output: no run.")
    parser.add_argument("--save", type=Path, help="Also keep the run's whole output here.")
    args = parser.parse_args(argv)
    output = args.output.read_text() if args.output else demo_output()
    if args.save:
        args.save.write_text(output)
    try:
        args.readme.write_text(with_excerpt(args.readme.read_text(), excerpt(output)))
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    print(f"{args.readme}: the demo's excerpt written between {BEGIN} and {END}")


if __name__ == "__main__":
    main()
