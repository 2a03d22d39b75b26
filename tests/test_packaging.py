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
    return _build("wheel", tmp_path_factory.mktemp("dist"))


def _build(target: str, out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", target, "-d", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (built,) = out.glob("layoutsync-*.whl" if target == "wheel" else "layoutsync-*.tar.gz")
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


def test_the_licence_ships_in_the_wheel_and_the_metadata_says_so(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    names = set(archive.namelist())
    assert "layoutsync-0.1.0.dist-info/licenses/LICENSE" in names
    metadata = archive.read("layoutsync-0.1.0.dist-info/METADATA").decode()
    assert "License: MIT" in metadata  # what `pip show` prints, old pip and new
    assert "Classifier: License :: OSI Approved :: MIT License" in metadata
    assert "Author-email: " in metadata and "Keywords: " in metadata
    assert "Project-URL: Source, " in metadata and "Classifier: Typing :: Typed" in metadata
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_pip_show_shows_the_licence() -> None:
    import importlib.metadata

    assert importlib.metadata.metadata("layoutsync")["License"] == "MIT"


def test_the_sdist_ships_the_licence_and_changelog(tmp_path: Path) -> None:
    if not _has_module("hatchling"):
        pytest.skip("hatchling is not installed (it comes with the dev extra)")
    import tarfile

    built = _build("sdist", tmp_path)
    with tarfile.open(built) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "CHANGELOG.md", "README.md", "layoutsync/py.typed"} <= names


def test_every_changelog_release_carries_a_date() -> None:
    import re

    headings = re.findall(r"^## \[([^\]]+)\](.*)$", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert headings and headings[0][0] == "Unreleased"
    for version, rest in headings[1:]:
        assert re.fullmatch(r" - \d{4}-\d{2}-\d{2}", rest), (version, rest)


def test_mypy_is_configured_and_run_in_ci() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "[tool.mypy]" in pyproject and "disallow_untyped_defs = true" in pyproject
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("mypy layoutsync") > ci.index("ruff check")
