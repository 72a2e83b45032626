"""Where a benchmark's figures go: bench/results/NAME.json and .md, and the table of
bench/README.md between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def publish(name, results, markdown):
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2))
    (out / f"{name}.md").write_text(markdown + "\n")
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    readme = ROOT / "bench" / "README.md"
    text = readme.read_text()
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        readme.write_text(f"{head}{start}\n{markdown}\n{end}{tail}")
    print(markdown)
