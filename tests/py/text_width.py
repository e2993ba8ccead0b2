#!/usr/bin/env python3
"""Checks a plain-text email part the way a reader's terminal shows it (wcwidth): no line wider
than WIDTH columns unless it is one unbreakable URL (optionally after a `[n] ` reference
label), and no line that starts with closing punctuation.

usage: text_width.py FILE [WIDTH]"""

import re
import sys

from wcwidth import wcswidth

CLOSING = set("，。、」》）：；！？』】〕〉〗｝”’,.;:!?)]}")
URL_LINE = re.compile(r"^(\[\d+\] )?\S*://\S+$")


def main():
    width = int(sys.argv[2]) if len(sys.argv) > 2 else 72
    problems = []
    lines = open(sys.argv[1], encoding="utf-8").read().split("\n")
    for n, line in enumerate(lines, 1):
        w = wcswidth(line)
        if w < 0:
            problems.append(f"line {n}: a control character: {line!r}")
        elif w > width and not URL_LINE.match(line):
            problems.append(f"line {n}: {w} columns: {line}")
        stripped = line.lstrip("> ")
        if stripped and stripped[0] in CLOSING:
            problems.append(f"line {n}: starts with closing punctuation: {line}")
    print("\n".join(problems) if problems else f"ok: {len(lines)} lines")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
