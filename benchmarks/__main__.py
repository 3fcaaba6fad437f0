"""``python -m benchmarks`` (``make bench``): the benchmarks and what each measures; run one with
``python -m benchmarks.<name>`` (``--help`` gives its options)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def main() -> int:
    here = Path(__file__).parent
    print(__doc__.strip() + "\n")
    for path in sorted(here.glob("[!_]*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        print(f"  {path.stem:<20} {doc.splitlines()[0] if doc else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
