"""python -m dtrain.run: dtrain-run for Python programs.

    python -m dtrain.run --nproc-per-node 4 train.py --steps 100
    python -m dtrain.run --nproc-per-node 2 -m mypackage.train

Behaves exactly like the dtrain-run launcher (it execs the one shipped in the
wheel): each rank gets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
MASTER_ADDR, MASTER_PORT and a job secret; output lines are prefixed with the
rank; when one rank fails the others are stopped and the exit code is the
failed rank's. What differs: a program ending in .py (or -m MODULE) runs under
this interpreter, torchrun's underscore spellings (--nproc_per_node) are
accepted, and PYTHONUNBUFFERED=1 is set unless already set, so rank output
is not held back in pipe buffers.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import List, Optional

_FLAGS = {"-h", "--help"}


def launcher_path() -> str:
    """The dtrain-run binary: the wheel's own (next to the extension, which in an
    editable install is not next to this file), else one on PATH."""
    from . import _C

    for folder in {Path(os.path.abspath(_C.__file__)).parent, Path(os.path.abspath(__file__)).parent}:
        candidate = folder / "bin" / "dtrain-run"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("dtrain-run")
    if found:
        return found
    raise SystemExit("python -m dtrain.run: no dtrain-run launcher found next to the package or on PATH; "
                     "reinstall dtrain (pip install .)")


def build_command(argv: List[str], python: str = sys.executable) -> List[str]:
    """dtrain-run's argument list for `python -m dtrain.run ARGV` (without the launcher itself)."""
    options: List[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-m":
            return options + [python, "-m"] + argv[i + 1:]
        if not arg.startswith("-"):
            program = [python, arg] if arg.endswith(".py") else [arg]
            return options + program + argv[i + 1:]
        if arg.startswith("--"):
            name, sep, value = arg.partition("=")
            name = name.replace("_", "-")
            arg = name + sep + value
        options.append(arg)
        if arg in _FLAGS or "=" in arg:
            i += 1
        else:
            if i + 1 < len(argv):
                options.append(argv[i + 1])
            i += 2
    return options


def main(argv: Optional[List[str]] = None) -> None:
    args = build_command(list(sys.argv[1:] if argv is None else argv))
    launcher = launcher_path()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    os.execv(launcher, [launcher] + args)


if __name__ == "__main__":
    main()
