"""Install ``vimaged-cni`` into a CNI bin directory: the compiled client, else a fast launcher.

usage: python3 -m vimaged_cni.launcher [--python] DIR   (e.g. /opt/cni/bin; replaces
DIR/vimaged-cni)

By default the C client shipped beside this module (``vimaged-cni.c``, the same ``cni_exec``
client as :mod:`vimaged_cni.cli`, without an interpreter to start: docs/design.md) is compiled
with ``$CC`` (default ``cc``); with no compiler, or ``--python``, the Python launcher below is
written instead. Either way the file appears at once, mode 0755, by a rename.

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
import shlex
import shutil
import subprocess
import sys
import tempfile

NAME = "vimaged-cni"
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vimaged-cni.c")
CFLAGS = ("-std=c99", "-O2")
"""No -Werror: a newer compiler's new warning must not fail an install (the tests use it)."""


class CompilerError(Exception):
    """The C compiler is missing or failed; the message says which and why."""


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
    """Write the Python launcher as ``directory/vimaged-cni`` (mode 0755) atomically; its path."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return _replace(directory, launcher_text(python, root).encode())


def compiler() -> list[str] | None:
    """``$CC`` (a command and its flags, as make takes it) or ``cc``, if it is on PATH."""
    command = shlex.split(os.environ.get("CC") or "cc")
    return command if command and shutil.which(command[0]) else None


def install_compiled(directory: str, cc: list[str] | None = None) -> str:
    """Compile the C client into ``directory/vimaged-cni`` (mode 0755) atomically; its path.

    Raises:
        CompilerError: no compiler (``cc`` None and none found) or the compilation failed.
    """
    cc = cc or compiler()
    if cc is None:
        raise CompilerError(f"no C compiler: {os.environ.get('CC') or 'cc'} not found")
    # The compiler writes into a private directory, so nobody can swap the file it makes;
    # the copy into DIR is as careful as the launcher's.
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, NAME)
        try:
            done = subprocess.run([*cc, *CFLAGS, "-o", out, SOURCE], capture_output=True,
                                  text=True, timeout=300, check=False)  # fmt: skip
        except OSError as exc:
            raise CompilerError(f"{cc[0]}: {exc.strerror}") from None
        if done.returncode != 0:
            raise CompilerError(f"{shlex.join(cc)} failed:\n{done.stderr.strip()}")
        with open(out, "rb") as f:
            binary = f.read()
    return _replace(directory, binary)


def _replace(directory: str, data: bytes) -> str:
    path = os.path.join(directory, NAME)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o755)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o755)  # whatever the umask
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    python_only = args[:1] == ["--python"]
    args = args[1:] if python_only else args
    if len(args) != 1 or not os.path.isdir(args[0]):
        sys.exit(
            "usage: python3 -m vimaged_cni.launcher [--python] DIR  (DIR: a CNI bin directory)"
        )
    if python_only:
        print(f"{install(args[0])}: the Python launcher (--python)")
        return
    try:
        path = install_compiled(args[0])
    except CompilerError as exc:
        print(f"vimaged_cni.launcher: {exc}", file=sys.stderr)
        print(f"{install(args[0])}: the Python launcher (no compiled client: see above)")
        return
    print(f"{path}: the compiled client")


if __name__ == "__main__":
    main()
