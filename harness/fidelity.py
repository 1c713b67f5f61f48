"""artifacts/fidelity.md: each suite test on two backends side by side, from their summaries.

    python -m harness.fidelity artifacts/local/summary.json artifacts/kind/summary.json \\
        --names local,kind -o artifacts/fidelity.md

Each summary is a run's summary.json (harness/pytest_reports.py) or, from older runs, its summary.md.

Rows are matched by (scenario, test, mode), and repeated keys by their order (both backends run
the suites in the same order); results and observations are shown per backend, and a
row whose results differ, or that one backend lacks, is marked so it can be explained (the
`--notes` file, `scenario/test/mode: text` per line, adds the explanation column).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.console import description


def parse_summary(text: str) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(scenario, test, mode) -> (result, observations) from harness/summary.py's table."""
    rows: dict[tuple[str, str, str], tuple[str, str]] = {}
    for line in text.splitlines():
        if not line.startswith("| ") or line.startswith(("| scenario", "|---")):
            continue
        cells = [c.strip() for c in line.strip().strip("|").replace("\\|", "\x00").split("|")]
        if len(cells) < 5:
            continue
        scenario, test, mode, result, obs = cells[:5]
        key = (scenario, test, mode)
        n = 2
        while key in rows:  # a test parametrized beyond the mode (cleanup's stages): rows keep their order
            key, n = (scenario, f"{test} #{n}", mode), n + 1
        rows[key] = (result, obs.replace("\x00", "\\|"))
    return rows


def load_summary(path: Path) -> dict[tuple[str, str, str], tuple[str, str]]:
    """parse_summary's rows, from a summary.json or a summary.md."""
    if path.suffix != ".json":
        return parse_summary(path.read_text())
    from harness.summary import observations_cell, result_cell

    rows: dict[tuple[str, str, str], tuple[str, str]] = {}
    for test in json.loads(path.read_text())["tests"]:
        rows[(test["scenario"], test["test"], test["mode"])] = (
            result_cell(test["outcome"]),
            observations_cell(test["observations"]).replace("|", "\\|"),  # as a cell of summary.md
        )
    return rows


def render(summaries: list[dict], names: list[str], notes: dict[str, str], compact: bool = False) -> str:
    """The table; `compact` leaves out the observations (for the README)."""
    keys = list(dict.fromkeys(k for s in summaries for k in s))
    per = (lambda n: f"{n}") if compact else (lambda n: f"{n} result | {n} observations")
    head = "| scenario | test | mode | " + " | ".join(per(n) for n in names) + " | same? | note |"
    lines = [
        "# Fidelity: the suites on " + " and ".join(names),
        "",
        head,
        "|" + "---|" * (3 + (1 if compact else 2) * len(names) + 2),
    ]
    same_count = 0
    for key in keys:
        cells = []
        results = []
        for s in summaries:
            result, obs = s.get(key, ("—", ""))
            results.append(result)
            cells += [result] if compact else [result, obs]
        same = len(set(results)) == 1 and "—" not in results
        same_count += same
        note = notes.get("/".join(key), "")
        lines.append("| " + " | ".join([*key, *cells, "yes" if same else "**no**", note]) + " |")
    lines[1:1] = ["", f"{same_count} of {len(keys)} tests have the same result on every backend.", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.fidelity", description=description(__doc__))
    parser.add_argument("summaries", nargs="+", type=Path)
    parser.add_argument("--names", required=True)
    parser.add_argument("--notes", type=Path)
    parser.add_argument("-o", "--output", type=Path, default=Path("artifacts/fidelity.md"))
    parser.add_argument("--compact", action="store_true", help="results only, no observations (the README's table)")
    args = parser.parse_args(argv)
    names = args.names.split(",")
    if len(names) != len(args.summaries):
        print("egress-harness: error: --names needs one name per summary", file=sys.stderr)
        return 2
    notes = {}
    if args.notes and args.notes.exists():
        for line in args.notes.read_text().splitlines():
            if ": " in line and not line.startswith("#"):
                k, v = line.split(": ", 1)
                notes[k.strip()] = v.strip()
    text = render([load_summary(p) for p in args.summaries], names, notes, compact=args.compact)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"{args.output}: {text.splitlines()[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
