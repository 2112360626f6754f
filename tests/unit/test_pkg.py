"""Unit tier: scripts/build-pkg.py builds a pkg(8) archive with consistent manifests.

The package is built once per module into a temporary directory and read back with the
standard library: member order, manifest fields, every file's ``1$<sha256>`` sum, modes.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import shutil
import sys
import tarfile
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
    for key in ("comment", "desc", "maintainer", "www", "version"):
        assert manifest[key]


def test_compact_manifest_is_the_manifest_without_files(
    members: dict[str, tuple[tarfile.TarInfo, bytes]], manifest: dict[str, Any]
) -> None:
    compact = json.loads(members["+COMPACT_MANIFEST"][1])
    assert "files" not in compact
    assert compact == {k: v for k, v in manifest.items() if k not in ("files", "messages")}


def test_every_file_is_listed_with_its_sha256(
    members: dict[str, tuple[tarfile.TarInfo, bytes]], manifest: dict[str, Any]
) -> None:
    archived = {name: data for name, (_, data) in members.items() if not name.startswith("+")}
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
        assert info.mode == (0o755 if name in executable else 0o644), name


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
    packed = {name[len(site) :] for name in members if name.startswith(site)}
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
    for origin in ("devel/py-trio", "devel/py-msgspec", "devel/py-structlog"):
        assert f":{origin}@${{PY_FLAVOR}}" in makefile
