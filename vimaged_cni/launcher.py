"""Write a fast ``vimaged-cni`` launcher into a CNI bin directory.

usage: python3 -m vimaged_cni.launcher DIR   (e.g. /opt/cni/bin; replaces DIR/vimaged-cni)

The console script pip writes starts Python with ``site`` (every ``.pth`` file of the
installation, setuptools' distutils hack) and imports :mod:`re`, ~5-10 ms of every exec, and it
honours ``PYTHONPATH`` and friends from the runtime's environment, though it runs as root. The
launcher starts the same interpreter with ``-IS``: isolated (no ``PYTHON*`` variables, no user
site, not the working directory) and without ``site``; ``vimaged_cni`` needs only the standard
library and the directory it is installed in, which the launcher names. One flag word: Linux
passes everything after the interpreter in a ``#!`` line as one argument.
"""

from __future__ import annotations

import os
import sys

NAME = "vimaged-cni"


def launcher_text(python: str, root: str) -> str:
    """The launcher for the interpreter ``python`` and the directory ``root`` holding
    ``vimaged_cni``."""
    for value, what in ((python, "interpreter"), (root, "package directory")):
        if not os.path.isabs(value) or any(c in value for c in "\n\0 "):
            raise ValueError(f"the {what} {value!r} is no absolute path without spaces")
    return (
        f"#!{python} -IS\n"
        "# vimaged-cni, written by `python3 -m vimaged_cni.launcher`: -I ignores PYTHON*\n"
        "# variables and the working directory, -S skips site (see vimaged_cni/launcher.py).\n"
        "import sys\n"
        f"sys.path.append({root!r})\n"
        "from vimaged_cni.cli import main\n"
        "main()\n"
    )


def install(directory: str, python: str = sys.executable) -> str:
    """Write ``directory/vimaged-cni`` (mode 0755) atomically; its path."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = launcher_text(python, root)
    path = os.path.join(directory, NAME)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o755)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o755)  # whatever the umask
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def main() -> None:
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        sys.exit("usage: python3 -m vimaged_cni.launcher DIR  (DIR: a CNI bin directory)")
    print(install(sys.argv[1]))


if __name__ == "__main__":
    main()
