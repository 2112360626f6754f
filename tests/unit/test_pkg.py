"""Unit tier: scripts/build-pkg.py builds a pkg(8) archive with consistent manifests.

The package is built once per module into a temporary directory and read back with the
standard library: member order, manifest fields, every file's ``1$<sha256>`` sum, modes.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "/usr/local"


def load_builder() -> Any:
    spec = importlib.util.spec_from_file_location("build_pkg", ROOT / "scripts" / "build-pkg.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path: Path = load_builder().build(ROOT, tmp_path_factory.mktemp("pkg"))
    return path


@pytest.fixture(scope="module")
def members(built: Path) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    out: dict[str, tuple[tarfile.TarInfo, bytes]] = {}
    with tarfile.open(built, "r:xz") as tar:
        for info in tar.getmembers():
            if info.isdir():
                out[info.name] = (info, b"")
                continue
            handle = tar.extractfile(info)
            assert handle is not None
            out[info.name] = (info, handle.read())
    return out


@pytest.fixture(scope="module")
def manifest(members: dict[str, tuple[tarfile.TarInfo, bytes]]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(members["+MANIFEST"][1])
    return data


def test_package_is_named_after_the_version(built: Path) -> None:
    version = load_builder().read_version(ROOT)
    assert built.name == f"vimaged-{version}.pkg"


def test_manifests_come_first(built: Path) -> None:
    with tarfile.open(built, "r:xz") as tar:
        names = tar.getnames()
    assert names[:2] == ["+COMPACT_MANIFEST", "+MANIFEST"]


def test_manifest_fields(manifest: dict[str, Any]) -> None:
    assert manifest["name"] == "vimaged"
    assert manifest["origin"] == "sysutils/vimaged"
    assert manifest["abi"] == "FreeBSD:*:*"
    assert manifest["prefix"] == PREFIX
    assert set(manifest["deps"]) == {"py311-trio", "py311-msgspec", "py311-structlog", "python311"}
    assert manifest["deps"]["py311-msgspec"]["origin"] == "devel/py-msgspec"
    assert manifest["deps"]["py311-trio"]["origin"] == "net/py-trio"
    for key in ("comment", "desc", "maintainer", "www", "version"):
        assert manifest[key]


def test_compact_manifest_is_the_manifest_without_files(
    members: dict[str, tuple[tarfile.TarInfo, bytes]], manifest: dict[str, Any]
) -> None:
    compact = json.loads(members["+COMPACT_MANIFEST"][1])
    assert "files" not in compact
    # pkg_emit_object with PKG_MANIFEST_EMIT_COMPACT: no files, directories or scripts.
    full_only = ("files", "directories", "scripts", "messages")
    assert compact == {k: v for k, v in manifest.items() if k not in full_only}


def test_every_file_is_listed_with_its_sha256(
    members: dict[str, tuple[tarfile.TarInfo, bytes]], manifest: dict[str, Any]
) -> None:
    archived = {
        name: data
        for name, (info, data) in members.items()
        if not name.startswith("+") and not info.isdir()
    }
    assert set(archived) == set(manifest["files"])
    for name, data in archived.items():
        assert manifest["files"][name] == "1$" + hashlib.sha256(data).hexdigest(), name
    assert manifest["flatsize"] == sum(len(data) for data in archived.values())


def test_files_are_owned_by_root_and_scripts_executable(
    members: dict[str, tuple[tarfile.TarInfo, bytes]],
) -> None:
    executable = {
        f"{PREFIX}/etc/rc.d/vimaged",
        f"{PREFIX}/etc/rc.d/vimage",
        f"{PREFIX}/sbin/vimaged",
        f"{PREFIX}/bin/vimagectl",
    }
    for name, (info, _) in members.items():
        assert (info.uname, info.gname, info.uid, info.gid) == ("root", "wheel", 0, 0)
        assert info.mode == (0o755 if name in executable or info.isdir() else 0o644), name


def test_rc_scripts_and_man_pages_are_the_checkouts(
    members: dict[str, tuple[tarfile.TarInfo, bytes]],
) -> None:
    for script in ("vimaged", "vimage"):
        assert (
            members[f"{PREFIX}/etc/rc.d/{script}"][1] == (ROOT / "etc/rc.d" / script).read_bytes()
        )
    for page, section in (("vimaged.8", 8), ("vimagectl.8", 8), ("vimage.conf.5", 5)):
        packed = members[f"{PREFIX}/share/man/man{section}/{page}.gz"][1]
        assert gzip.decompress(packed) == (ROOT / "docs" / page).read_bytes()


def test_python_packages_are_complete_and_compile(
    members: dict[str, tuple[tarfile.TarInfo, bytes]],
) -> None:
    site = f"{PREFIX}/lib/python3.11/site-packages/"
    packed = {
        name[len(site) :]
        for name, (info, _) in members.items()
        if name.startswith(site) and not info.isdir()
    }
    sources = {
        path.relative_to(ROOT).as_posix()
        for package in ("vimaged", "vimagectl")
        for pattern in ("*.py", "*.json")  # the JSON Schema vimagectl checks replies with
        for path in (ROOT / package).rglob(pattern)
        if "__pycache__" not in path.parts
    }
    assert "vimagectl/protocol.schema.json" in sources
    assert packed == sources
    for name in packed:
        if name.endswith(".json"):
            assert members[site + name][1] == (ROOT / name).read_bytes()
        else:
            compile(members[site + name][1], name, "exec")


def test_entry_points_run_the_clis(members: dict[str, tuple[tarfile.TarInfo, bytes]]) -> None:
    daemon = members[f"{PREFIX}/sbin/vimaged"][1].decode()
    ctl = members[f"{PREFIX}/bin/vimagectl"][1].decode()
    assert daemon.startswith(f"#!{PREFIX}/bin/python3.11\n")
    assert "from vimaged.cli import main" in daemon
    assert "from vimagectl.cli import main" in ctl


def test_build_is_reproducible(built: Path, tmp_path: Path) -> None:
    again: Path = load_builder().build(ROOT, tmp_path)
    assert again.read_bytes() == built.read_bytes()


def test_missing_file_is_named(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    for part in ("vimaged", "vimagectl", "etc", "port"):
        shutil.copytree(ROOT / part, checkout / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "docs", checkout / "docs")
    (checkout / "docs" / "vimagectl.8").unlink()
    with pytest.raises(SystemExit, match=r"vimagectl\.8 is missing"):
        load_builder().build(checkout, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_port_plist_lists_what_the_port_installs_beyond_python() -> None:
    plist = (ROOT / "port" / "pkg-plist").read_text().splitlines()
    examples = sorted(path.name for path in (ROOT / "etc" / "examples").iterdir())
    assert [line.rpartition("/")[2] for line in plist if "EXAMPLESDIR" in line] == examples
    assert "share/man/man8/vimaged.8.gz" in plist
    assert "share/man/man5/vimage.conf.5.gz" in plist
    assert "etc/defaults/vimaged" in plist


def test_port_makefile_declares_rc_scripts_and_runtime_deps() -> None:
    makefile = (ROOT / "port" / "Makefile").read_text()
    assert "USE_RC_SUBR=\tvimaged vimage\n" in makefile
    for origin in ("net/py-trio", "devel/py-msgspec", "devel/py-structlog"):
        assert f":{origin}@${{PY_FLAVOR}}" in makefile


def test_port_builds_the_c_client_into_the_cni_plugin_dir() -> None:
    """The compiled vimaged-cni: built with the port's ${CC} ${CFLAGS} from the shipped source,
    installed to libexec/cni (net/containernetworking-plugins' dir, docs/freebsd.md), listed
    in the plist; a compiled binary makes the package per architecture (no NO_ARCH)."""
    makefile = (ROOT / "port" / "Makefile").read_text().replace("\\\n", " ")
    plist = (ROOT / "port" / "pkg-plist").read_text().splitlines()
    build = re.search(r"^post-build:\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert build is not None
    (command,) = build.group(1).split("\n")[:1]
    words = command.split()
    assert words[:2] == ["${CC}", "${CFLAGS}"]
    assert words[words.index("-o") + 1] == "${WRKSRC}/vimaged-cni"
    source = words[-1].removeprefix("${WRKSRC}/")
    assert (ROOT / source).is_file()
    assert source == "vimaged_cni/vimaged-cni.c"
    assert "\t${INSTALL_PROGRAM} ${WRKSRC}/vimaged-cni ${STAGEDIR}${PREFIX}/libexec/cni/\n" in (
        makefile
    )
    assert [line for line in plist if line.startswith("libexec/")] == ["libexec/cni/vimaged-cni"]
    assert "NO_ARCH" not in makefile


# Every origin the port and the package name, with the freebsd/freebsd-ports commit whose
# Makefile was read (docs/freebsd.md, "Packaging"). devel/py-trio is not here: it moved to
# net/py-trio in 2020.
LIVE_ORIGINS = {
    "net/py-trio": "a3ebd773",  # 0.30.0
    "devel/py-msgspec": "ffba54bf",  # 0.20.0
    "devel/py-structlog": "146fa7c9",  # 25.4.0
    "devel/py-wheel": "2678493f",
    "devel/py-setuptools": "32e58a9d",  # via ${PY_SETUPTOOLS}
}


def makefile_origins(text: str) -> set[str]:
    return set(re.findall(r":([a-z0-9-]+/[A-Za-z0-9_.+-]+)@\$\{PY_FLAVOR\}", text))


def test_every_origin_is_a_live_port() -> None:
    makefile = (ROOT / "port" / "Makefile").read_text()
    named = makefile_origins(makefile) | {
        origin for origin, _ in load_builder().RUNTIME_DEPS.values()
    }
    assert named
    assert named <= set(LIVE_ORIGINS), named - set(LIVE_ORIGINS)
    assert makefile_origins("X>=0:devel/py-trio@${PY_FLAVOR}") == {"devel/py-trio"}


def test_port_builds_with_the_trees_setuptools_from_github() -> None:
    makefile = (ROOT / "port" / "Makefile").read_text()
    variables = dict(re.findall(r"^([A-Z_]+)=\t+(.*)$", makefile, re.MULTILINE))
    # As net/py-trio: the tree's own setuptools, whatever its version, and wheel.
    assert variables["BUILD_DEPENDS"].startswith("${PY_SETUPTOOLS} ")
    assert "setuptools>=" not in makefile
    # USE_GITHUB fetches the tag v${DISTVERSION}; no hand-made MASTER_SITES or DISTFILES.
    assert variables["USE_GITHUB"] == "yes"
    assert "MASTER_SITES" not in variables
    assert "DISTFILES" not in variables
    assert variables["DISTVERSIONPREFIX"] == "v"
    assert variables["DISTVERSION"] == load_builder().read_version(ROOT)


def test_pyproject_builds_with_setuptools_61_to_63() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (requirement,) = project["build-system"]["requires"]
    match = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", requirement)
    assert match is not None
    assert 61 <= int(match.group(1)) <= 63  # the ports tree has 63.1.0
    # An SPDX string (license = "BSD-2-Clause") needs setuptools >= 77.
    assert project["project"]["license"] == {"text": "BSD-2-Clause"}


def test_checklist_builds_the_port_as_written() -> None:
    builder = load_builder()
    version = builder.read_version(ROOT)
    checklist = (ROOT / "docs" / "freebsd-checklist.md").read_text()
    # bsd.sites.mk: DISTNAME ${GH_ACCOUNT}-${GH_PROJECT}-${GH_TAGNAME}, _GH0.tar.gz; WRKSRC
    # ${GH_PROJECT}-${GH_TAGNAME_EXTRACT} (the leading v dropped).
    assert f"--prefix=vimaged-{version}/" in checklist
    assert f"/usr/ports/distfiles/vimaged-vimaged-v{version}_GH0.tar.gz" in checklist
    assert "make makesum" in checklist
    assert "make stage check-plist" in checklist
    assert "build-pkg.py --python" in checklist


def test_dependencies_follow_the_flavor_built(tmp_path: Path) -> None:
    built = load_builder().build(ROOT, tmp_path, python="3.12")
    with tarfile.open(built, "r:xz") as tar:
        handle = tar.extractfile("+MANIFEST")
        assert handle is not None
        manifest = json.loads(handle.read())
        daemon = tar.extractfile(f"{PREFIX}/sbin/vimaged")
        assert daemon is not None
        assert daemon.read().startswith(f"#!{PREFIX}/bin/python3.12\n".encode())
    assert set(manifest["deps"]) == {"py312-trio", "py312-msgspec", "py312-structlog", "python312"}
    assert manifest["annotations"]["flavor"] == "py312"
    assert all(
        name.startswith(f"{PREFIX}/lib/python3.12/site-packages/")
        for name in manifest["files"]
        if "/lib/" in name
    )


def test_directories_are_listed_and_archived(
    members: dict[str, tuple[tarfile.TarInfo, bytes]], manifest: dict[str, Any]
) -> None:
    site = f"{PREFIX}/lib/python3.11/site-packages"
    dirs = set(manifest["directories"])
    assert {f"{site}/vimaged", f"{site}/vimaged/netgraph", f"{site}/vimagectl"} <= dirs
    assert f"{PREFIX}/share/examples/vimaged" in dirs
    # The base layout and the interpreter's directories are not the package's to remove.
    for shared in ("/etc/rc.d", "/sbin", "/share/man/man8", "/lib/python3.11/site-packages"):
        assert PREFIX + shared not in dirs
    # Every parent of a file is the package's or shared; every listed one is in the archive.
    for name in manifest["files"]:
        parent = name.rpartition("/")[0]
        assert parent in dirs or parent[len(PREFIX) + 1 :] in load_builder().SHARED_DIRS | {
            "lib/python3.11/site-packages"
        }, name
    assert {name for name, (info, _) in members.items() if info.isdir()} == dirs


def test_pkg_delete_leaves_nothing_behind(tmp_path: Path) -> None:
    """Install as pkg(8) would (extract, post-install), run the daemon's bytecode writes,
    then delete as pkg_delete.c does: pre-deinstall, each file, then the directories (and
    the emptied parents of files, rmdir_p), deepest first."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    built = load_builder().build(ROOT, tmp_path / "out", python=python)
    root = tmp_path / "root"
    with tarfile.open(built, "r:xz") as tar:
        handle = tar.extractfile("+MANIFEST")
        assert handle is not None
        manifest = json.loads(handle.read())
        tar.extractall(root, filter="data", members=[m for m in tar if m.name.startswith("/")])
    prefix = root / PREFIX.lstrip("/")
    (prefix / "bin" / f"python{python}").symlink_to(sys.executable)
    env = {"PATH": os.environ["PATH"], "PKG_PREFIX": str(prefix)}

    def script(name: str) -> None:
        subprocess.run(["/bin/sh", "-c", manifest["scripts"][name]], env=env, check=True)

    script("post-install")
    pycs = list(prefix.rglob("*.pyc"))
    assert pycs
    assert all(pyc.parent.name == "__pycache__" for pyc in pycs)
    script("pre-deinstall")
    for name in manifest["files"]:
        (root / name.lstrip("/")).unlink()
    for name in sorted(manifest["directories"], key=len, reverse=True):
        (root / name.lstrip("/")).rmdir()
    (prefix / "bin" / f"python{python}").unlink()
    left = sorted(str(path.relative_to(prefix)) for path in prefix.rglob("*"))
    shared = load_builder().SHARED_DIRS | {
        "lib",
        f"lib/python{python}",
        f"lib/python{python}/site-packages",
        "etc",
        "share",
        "bin",
    }
    assert [path for path in left if path not in shared] == []
