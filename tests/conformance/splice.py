"""Replaces the text between `<!-- begin NAME -->` and `<!-- end NAME -->` in a Markdown file with stdin.

Used by `make conformance` to keep the scorecards in docs/conformance.md current without touching the
prose around them. Standard library only.
"""

import re
import sys


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: splice.py FILE NAME < content", file=sys.stderr)
        return 2
    path, name = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as f:
        text = f.read()
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        print(f"{path} has no {begin} ... {end} block", file=sys.stderr)
        return 1
    content = sys.stdin.read().strip("\n")
    text = pattern.sub(lambda _: f"{begin}\n{content}\n{end}", text, count=1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
