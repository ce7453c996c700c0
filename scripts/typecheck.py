"""mypy --strict over the real tree: the ``chatmq`` package and the tests.

The ``chatmq`` import package is assembled from top-level folders (``pyproject.toml``'s
``package-dir``), which mypy cannot follow by path. So this hands mypy every source file with
its module name (``broker/node.py`` is ``chatmq.broker.node``): errors name the files in the
repository, and there is no symlinked view. Extra arguments go to mypy.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from mypy import build
from mypy.errors import CompileError
from mypy.main import process_options
from mypy.modulefinder import BuildSource

ROOT = Path(__file__).resolve().parent.parent


def package_sources() -> list[BuildSource]:
    """One ``BuildSource`` per ``.py`` file of every package listed in ``pyproject.toml``."""
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs: dict[str, str] = setup["package-dir"]
    sources: list[BuildSource] = []
    for package in setup["packages"]:
        # the folder of a package: its own package-dir entry, else its parent's folder + its last name
        base, rest = package, ""
        while base not in dirs:
            base, _, last = base.rpartition(".")
            rest = f"{last}/{rest}" if rest else last
        folder = ROOT / dirs[base] / rest
        for path in sorted(folder.glob("*.py")):
            module = package if path.stem == "__init__" else f"{package}.{path.stem}"
            sources.append(BuildSource(str(path.relative_to(ROOT)), module))
    return sources


def main(argv: list[str]) -> int:
    test_sources, options = process_options(["--strict", "--explicit-package-bases", "tests", *argv])
    try:
        result = build.build(package_sources() + test_sources, options)
    except CompileError as exc:
        print("\n".join(exc.messages), file=sys.stderr)
        return 2
    for line in result.errors:
        print(line)
    if result.errors:
        files = {line.split(":", 1)[0] for line in result.errors if ": error:" in line}
        count = sum(": error:" in line for line in result.errors)
        print(f"Found {count} errors in {len(files)} files")
        return 1
    print(f"Success: no issues found in {len(result.files)} modules")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
