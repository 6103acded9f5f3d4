"""Console entry points ``screed`` and ``screectl`` of the wheel.

The programs themselves are the C executables that the wheel carries in
``scree/_bin`` (built with the extension; auditwheel grafts the libraries
they need next to them). These functions replace the Python process with the
program, so that the daemon keeps the console script's PID: signals,
``systemd``'s ``NotifyAccess=main`` and exit statuses behave as for the
program started directly.
"""

from __future__ import annotations

import os
import sys

__all__ = ["program_path", "screed", "screectl"]

_BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bin")


def program_path(name: str) -> str:
    """Path of the program ``name`` (``"screed"`` or ``"screectl"``) in this
    installation; it may not exist where the package was not built with it
    (a source tree on ``PYTHONPATH``)."""
    if name not in ("screed", "screectl"):
        raise ValueError(f"no program {name!r} in scree; there are 'screed' and 'screectl'")
    return os.path.join(_BIN, name)


def _exec(name: str) -> None:
    path = program_path(name)
    if not os.access(path, os.X_OK):
        sys.stderr.write(
            f"{name}: {path} is missing: this scree package was installed without its "
            f"programs (a source tree on PYTHONPATH?). Install the wheel "
            f"(`make wheel`, then pip install build-wheel/dist/scree-*.whl) or "
            f"build with CMake (`make build`, then build/daemon/screed).\n"
        )
        sys.exit(127)
    # argv[0] is the plain name, as a shell would give it: the programs name
    # themselves in messages from it.
    try:
        os.execv(path, [name, *sys.argv[1:]])
    except OSError as e:
        sys.stderr.write(f"{name}: cannot run {path}: {e.strerror}\n")
        sys.exit(126)


def screed() -> None:
    """The ``screed`` console script: runs scree/_bin/screed with this
    process's arguments."""
    _exec("screed")


def screectl() -> None:
    """The ``screectl`` console script: runs scree/_bin/screectl with this
    process's arguments."""
    _exec("screectl")
