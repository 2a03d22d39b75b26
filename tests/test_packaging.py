"""The wheel ships the schemas and the type marker, and they load from the installed package."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("hatchling") is None and not _has_module("hatchling"):
        pytest.skip("hatchling is not installed (it comes with the dev extra)")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (built,) = out.glob("layoutsync-*.whl")
    return built


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_wheel_contains_every_schema_and_py_typed(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for schema in (ROOT / "schemas").glob("*.schema.json"):
        assert f"layoutsync/schemas/{schema.name}" in names
    assert "layoutsync/py.typed" in names
    for asset in ("index.html", "app.js", "app.css"):
        assert f"layoutsync/daemon/dashboard_static/{asset}" in names


def test_schemas_load_from_an_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    zipfile.ZipFile(wheel).extractall(tmp_path)
    code = (
        "import pathlib, layoutsync\n"
        "from layoutsync._resources import load_schema, schema_dir\n"
        "package = pathlib.Path(layoutsync.__file__).parent\n"
        "assert str(schema_dir()).startswith(str(package)), schema_dir()\n"
        "print(load_schema('transcoder-request')['title'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "cloudTranscoderV2" in result.stdout
