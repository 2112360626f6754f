"""``python3 -m vimaged_cni.launcher DIR``: the compiled client, ``--python``, and the fallback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from vimaged_cni import launcher

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def version(path: Path) -> bytes:
    done = subprocess.run([str(path)], input=b'{"cniVersion": "1.0.0"}', capture_output=True,
                          env={"CNI_COMMAND": "VERSION"}, timeout=60, check=True)  # fmt: skip
    return done.stdout


VERSION_1_0 = b'{"cniVersion": "1.0.0", "supportedVersions": ["1.0.0", "1.1.0"]}\n'


@pytest.fixture
def cc(monkeypatch: pytest.MonkeyPatch) -> str:
    found = shutil.which("cc")
    if found is None:
        pytest.fail("no C compiler (cc): scripts/setup.sh installs gcc and libc6-dev")
    monkeypatch.delenv("CC", raising=False)
    return found


def test_the_compiled_client_is_installed_by_default(
    tmp_path: Path, cc: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "vimaged-cni").symlink_to(tmp_path / "elsewhere")  # replaced, not followed
    launcher.main([str(tmp_path)])
    path = tmp_path / "vimaged-cni"
    assert capsys.readouterr().out == f"{path}: the compiled client\n"
    assert not path.is_symlink()
    assert path.read_bytes()[:4] == b"\x7fELF"
    assert os.stat(path).st_mode & 0o777 == 0o755
    assert sorted(os.listdir(tmp_path)) == ["vimaged-cni"]  # no temporary, no "elsewhere"
    assert version(path) == VERSION_1_0


def test_cc_is_honoured_with_its_flags(
    tmp_path: Path, cc: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CC", f"{cc} -DDEFAULT_SOCKET='\"/nonexistent/v.sock\"'")
    path = launcher.install_compiled(str(tmp_path))
    done = subprocess.run([path], input=b"{}", capture_output=True, env={"CNI_COMMAND": "DEL"},
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 1
    assert json.loads(done.stdout)["msg"].startswith("cannot reach vimaged at /nonexistent/v.sock:")


def test_python_forces_the_python_launcher(
    tmp_path: Path, cc: str, capsys: pytest.CaptureFixture[str]
) -> None:
    launcher.main(["--python", str(tmp_path)])
    path = tmp_path / "vimaged-cni"
    assert capsys.readouterr().out == f"{path}: the Python launcher (--python)\n"
    assert path.read_text().startswith(f"#!{sys.executable} -IS\n")
    assert version(path) == VERSION_1_0


@pytest.mark.parametrize(
    ("compiler", "why"), [("/nonexistent/cc", "not found"), ("false", "failed")]
)
def test_without_a_working_compiler_the_python_launcher_is_written(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    compiler: str,
    why: str,
) -> None:
    monkeypatch.setenv("CC", compiler)
    launcher.main([str(tmp_path)])
    path = tmp_path / "vimaged-cni"
    out, err = capsys.readouterr()
    assert out == f"{path}: the Python launcher (no compiled client: see above)\n"
    assert why in err
    assert path.read_text().startswith(f"#!{sys.executable} -IS\n")
    assert sorted(os.listdir(tmp_path)) == ["vimaged-cni"]
    with pytest.raises(launcher.CompilerError, match=why):
        launcher.install_compiled(str(tmp_path))


def test_usage_is_refused_without_a_directory(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="usage"):
        launcher.main([str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match="usage"):
        launcher.main(["--python"])


def test_the_c_source_ships_as_package_data() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["package-data"]["vimaged_cni"] == ["vimaged-cni.c"]
    assert Path(launcher.SOURCE) == ROOT / "vimaged_cni" / "vimaged-cni.c"
