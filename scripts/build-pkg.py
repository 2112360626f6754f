#!/usr/bin/env python3
"""Packaging: build an installable FreeBSD package (``vimaged-VERSION.pkg``) from a checkout.

Standard library only, on any OS: ``python3 scripts/build-pkg.py [-o DIR]``. No pkg(8), no
build of the Python package: the sources are pure Python and go to
``lib/pythonX.Y/site-packages`` as they are.

The archive is what ``pkg create`` writes (freebsd/pkg:libpkg/pkg_create.c@00f5629d,
``pkg_create_from_dir``): ``+COMPACT_MANIFEST`` then ``+MANIFEST`` first, then each file
under its absolute path (``/usr/local/sbin/vimaged``), then each directory the package owns.
The manifests are JSON, which is valid
UCL; each file's sum is ``1$<sha256 hex>`` (``PKG_HASH_TYPE_SHA256_HEX`` = 1 and ``$`` as
separator, libpkg/pkg_checksum.c ``pkg_checksum_generate_file``). The tar is xz-compressed:
pkg reads archives through libarchive with every filter enabled, xz was its ``txz`` default
for years (every pkg 1.x reads it), and Python's stdlib writes xz but not zstd, pkg's newer
default. The name ends in ``.pkg`` as pkg names every format since 1.17. Builds are
reproducible: sorted entries, root:wheel, fixed mtime (``SOURCE_DATE_EPOCH``, else 0).

``--python X.Y`` picks the flavor: site-packages of pythonX.Y, the ``#!`` of the entry
points and dependencies named ``pyXY-trio`` ... as the ports tree's ``${PYTHON_PKGNAMEPREFIX}``
names them. ``pkg delete`` leaves nothing behind: the manifest lists every directory the
package creates (``directories``, what ``@dir`` gives; pkg_manifest.c ``pkg_emit_object``),
bytecode is compiled by a ``post-install`` script with the target's own interpreter (the
build host's Python may be another version), and ``pre-deinstall`` removes the
``__pycache__`` directories that script, or a run as root, wrote.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "/usr/local"
ORIGIN = "sysutils/vimaged"
WWW = "https://github.com/vimaged/vimaged"
MAINTAINER = "vimaged@example.org"
COMMENT = "Supervisor for vimages (VNET jails) with netgraph bridging"
PACKAGES = ("vimaged", "vimagectl")
RUNTIME_DEPS = {
    # pkg name stem -> (port origin, lowest version pyproject.toml accepts)
    "trio": ("net/py-trio", "0.25"),  # devel/py-trio moved in 2020
    "msgspec": ("devel/py-msgspec", "0.18"),
    "structlog": ("devel/py-structlog", "24.1"),
}
# Directories of the base layout (freebsd-ports Templates/BSD.local.dist) and of the
# interpreter's package: never the package's own, never removed with it.
SHARED_DIRS = frozenset(
    {
        "bin",
        "etc",
        "etc/rc.d",
        "lib",
        "sbin",
        "share",
        "share/examples",
        "share/man",
        "share/man/man5",
        "share/man/man8",
    }
)
MESSAGE = """\
Enable and start the daemon:
  sysrc vimaged_enable=YES
  service vimaged start
Configure vimages in rc.conf(5): see vimage.conf(5) and
%%PREFIX%%/etc/defaults/vimaged for every variable.
"""


@dataclass(frozen=True)
class Entry:
    """One file of the package: where it goes under PREFIX, its bytes, its mode."""

    path: str
    data: bytes
    mode: int = 0o644

    @property
    def abspath(self) -> str:
        return f"{PREFIX}/{self.path}"

    @property
    def sum(self) -> str:
        return "1$" + hashlib.sha256(self.data).hexdigest()


def read_version(root: Path) -> str:
    text = (root / "vimaged" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    if match is None:
        raise SystemExit("build-pkg: no __version__ in vimaged/__init__.py")
    return match.group(1)


def gzip_bytes(data: bytes) -> bytes:
    """gzip with no name and mtime 0, so the same page gives the same bytes."""
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
        gz.write(data)
    return out.getvalue()


def entry_script(python: str, module: str) -> bytes:
    return (
        f"#!{PREFIX}/bin/python{python}\n"
        f'"""Entry point of {module.split(".")[0]}, installed by the vimaged package."""\n'
        "import sys\n\n"
        f"from {module} import main\n\n"
        "sys.exit(main())\n"
    ).encode()


def collect(root: Path, python: str) -> list[Entry]:
    """Every file of the package, sorted by path; SystemExit naming what is missing."""
    entries: list[Entry] = []
    site = f"lib/python{python}/site-packages"
    for package in PACKAGES:
        base = root / package
        if not (base / "__init__.py").is_file():
            raise SystemExit(f"build-pkg: {base}/__init__.py is missing: not a checkout?")
        for source in sorted(base.rglob("*")):
            if "__pycache__" in source.parts or not source.is_file():
                continue
            if source.suffix not in (".py", ".typed", ".json"):
                continue
            entries.append(
                Entry(f"{site}/{source.relative_to(root).as_posix()}", source.read_bytes())
            )
    entries.append(Entry("sbin/vimaged", entry_script(python, "vimaged.cli"), 0o755))
    entries.append(Entry("bin/vimagectl", entry_script(python, "vimagectl.cli"), 0o755))
    for script in ("vimaged", "vimage"):
        entries.append(Entry(f"etc/rc.d/{script}", read(root / "etc" / "rc.d" / script), 0o755))
    for page, section in (("vimaged.8", 8), ("vimagectl.8", 8), ("vimage.conf.5", 5)):
        data = read(root / "docs" / page)
        entries.append(Entry(f"share/man/man{section}/{page}.gz", gzip_bytes(data)))
    entries.append(Entry("etc/defaults/vimaged", read(root / "etc" / "defaults" / "vimaged")))
    for example in sorted((root / "etc" / "examples").glob("*")):
        if example.is_file():
            entries.append(Entry(f"share/examples/vimaged/{example.name}", example.read_bytes()))
    return sorted(entries, key=lambda entry: entry.path)


def directories(entries: list[Entry], python: str) -> list[str]:
    """Every directory (under PREFIX, no slash at the end) holding an entry that the base
    layout or lang/pythonXY does not already own, sorted."""
    shared = SHARED_DIRS | {f"lib/python{python}", f"lib/python{python}/site-packages"}
    found: set[str] = set()
    for entry in entries:
        parent = entry.path.rpartition("/")[0]
        while parent and parent not in shared:
            found.add(parent)
            parent = parent.rpartition("/")[0]
    return sorted(found)


def scripts(python: str) -> dict[str, str]:
    """post-install compiles the bytecode, pre-deinstall removes it (pkg runs both with
    PKG_PREFIX set, pkg-install(8))."""
    site = f'"${{PKG_PREFIX}}/lib/python{python}/site-packages'
    trees = " ".join(f'{site}/{package}"' for package in PACKAGES)
    return {
        "post-install": (
            f'"${{PKG_PREFIX}}/bin/python{python}" -m compileall -q {trees} >/dev/null || :'
        ),
        "pre-deinstall": (
            f"find {trees} -type d -name __pycache__ -prune -exec rm -rf {{}} + || :"
        ),
    }


def read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SystemExit(f"build-pkg: {path} is missing") from None


def manifests(root: Path, version: str, python: str, entries: list[Entry]) -> tuple[bytes, bytes]:
    """``+COMPACT_MANIFEST`` and ``+MANIFEST`` (the compact one without files)."""
    flavor = "py" + python.replace(".", "")
    deps = {
        f"{flavor}-{stem}": {"origin": origin, "version": lowest}
        for stem, (origin, lowest) in RUNTIME_DEPS.items()
    }
    deps[f"python{python.replace('.', '')}"] = {
        "origin": f"lang/python{python.replace('.', '')}",
        "version": python,
    }
    compact = {
        "name": "vimaged",
        "origin": ORIGIN,
        "version": version,
        "comment": COMMENT,
        "maintainer": MAINTAINER,
        "www": WWW,
        "abi": "FreeBSD:*:*",
        "arch": "freebsd:*:*",
        "prefix": PREFIX,
        "flatsize": sum(len(entry.data) for entry in entries),
        "licenselogic": "single",
        "licenses": ["BSD2CLAUSE"],
        "desc": read(root / "port" / "pkg-descr").decode().strip(),
        "categories": ["sysutils", "python"],
        "deps": dict(sorted(deps.items())),
        "annotations": {"flavor": flavor},
    }
    full = {
        **compact,
        "files": {entry.abspath: entry.sum for entry in entries},
        "directories": {f"{PREFIX}/{path}": "y" for path in directories(entries, python)},
        "scripts": scripts(python),
        "messages": [{"message": MESSAGE.replace("%%PREFIX%%", PREFIX)}],
    }
    return (json.dumps(compact, indent=2).encode(), json.dumps(full, indent=2).encode())


def tar_member(
    name: str, data: bytes, mode: int, mtime: int, kind: bytes = tarfile.REGTYPE
) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data)
    info.mode = mode
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname, info.gname = "root", "wheel"
    return info, io.BytesIO(data)


def build(root: Path, outdir: Path, python: str = "3.11") -> Path:
    """Write ``outdir/vimaged-VERSION.pkg`` and return its path."""
    if not re.fullmatch(r"3\.[0-9]{1,2}", python):
        raise SystemExit(f"build-pkg: bad Python version {python!r}; expected e.g. 3.11")
    version = read_version(root)
    entries = collect(root, python)
    compact, full = manifests(root, version, python, entries)
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    outdir.mkdir(parents=True, exist_ok=True)
    target = outdir / f"vimaged-{version}.pkg"
    partial = target.with_suffix(".pkg.part")
    try:
        with (
            lzma.open(partial, "wb", preset=6) as xz,
            tarfile.open(fileobj=xz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            tar.addfile(*tar_member("+COMPACT_MANIFEST", compact, 0o644, mtime))
            tar.addfile(*tar_member("+MANIFEST", full, 0o644, mtime))
            for entry in entries:
                tar.addfile(*tar_member(entry.abspath, entry.data, entry.mode, mtime))
            for path in directories(entries, python):
                tar.addfile(*tar_member(f"{PREFIX}/{path}", b"", 0o755, mtime, tarfile.DIRTYPE))
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build vimaged-VERSION.pkg for pkg(8).")
    parser.add_argument("-o", "--output", default=".", help="directory for the .pkg")
    parser.add_argument("--root", default=str(ROOT), help="the checkout (default: this one)")
    parser.add_argument(
        "--python",
        default="3.11",
        help="Python of the target, X.Y: its site-packages and pyXY-* dependencies (default 3.11)",
    )
    args = parser.parse_args(argv)
    path = build(Path(args.root), Path(args.output), args.python)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
