"""Parse the project's Python files with `ast`, robustly on the interpreter CI uses.

CPython 3.11.7 can raise `SystemError: AST constructor recursion depth mismatch` from
`ast.parse` once the interpreter's AST bookkeeping has drifted (python/cpython#106905, fixed in
3.11.8): seen in the unit suite only after many other tests ran in the same process. The
parsing therefore happens in a fresh interpreter, which sends the trees back pickled (AST
nodes pickle).
"""

from __future__ import annotations

import ast
import pickle
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

_PARSER = """
import ast, pickle, sys
paths = sys.stdin.read().splitlines()
trees = {p: ast.parse(open(p, encoding="utf-8").read(), filename=p) for p in paths}
sys.stdout.buffer.write(pickle.dumps(trees))
"""


def parse_files(paths: Iterable[Path]) -> dict[Path, ast.Module]:
    """Each file's syntax tree, parsed in one fresh interpreter (see the module docstring)."""
    wanted = [Path(p) for p in paths]
    done = subprocess.run(
        [sys.executable, "-c", _PARSER], input="\n".join(map(str, wanted)).encode(),
        capture_output=True, check=True, timeout=120,
    )
    trees: dict[str, ast.Module] = pickle.loads(done.stdout)  # our own child process
    return {path: trees[str(path)] for path in wanted}


def parse_file(path: Path) -> ast.Module:
    """One file's syntax tree."""
    return parse_files([path])[path]
