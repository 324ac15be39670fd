"""The distribution ships what a non-editable install needs: every package and the data files."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed_in_pyproject() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "onshi").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert found <= listed, f"add these to [tool.setuptools] packages: {sorted(found - listed)}"
    assert "onshi.card_profiles" in listed


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (whl,) = out.glob("onshi-*.whl")
    return whl


def test_wheel_carries_profiles_schema_and_backend_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"onshi/card_profiles/{p.name}" for p in (ROOT / "card_profiles").glob("*.yaml")}
    assert shipped and shipped <= names
    assert {
        "onshi/card_profiles/schema.json",
        "onshi/backend/openapi.yaml",
        "onshi/backend/schema.sql",
    } <= names


def test_installed_wheel_finds_its_profiles(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    probe = (
        "import onshi, onshi.profiles as p;"
        "print(onshi.__file__); print(len(p.list_profiles())); print(p.schema_path())"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("ONSHI_PROFILES_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout.split()
    assert out[0].startswith(str(site))
    assert int(out[1]) == len(list((ROOT / "card_profiles").glob("*.yaml")))
    assert out[2].startswith(str(site))


def test_wheel_carries_the_license(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "Apache License" in (ROOT / "LICENSE").read_text(encoding="utf-8")


def test_editable_install_is_quiet_and_finds_profiles(tmp_path: Path) -> None:
    """The set-up's editable install prints no setuptools warning (a plain layout, so setuptools
    uses a .pth entry rather than a meta-path finder) and still finds the shipped profiles."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # As ci/setup.sh does: a current pip shows the build backend's warnings.
    subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--upgrade", "pip"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    install = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "--no-deps", "-e", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    assert "Editable installation" not in install.stderr
    # Any warning of the build (setuptools' own, or a data directory it would treat as a
    # package); pip's notes about this machine's package indexes are not the project's.
    build_warnings = [
        line
        for line in install.stderr.splitlines()
        if "warning" in line.lower() and "Location 'file:" not in line
    ]
    assert build_warnings == []
    probe = "import importlib.resources as r; print(r.files('onshi.card_profiles') / 'valid.yaml')"
    out = subprocess.run(
        [str(venv / "bin/python"), "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.strip()
    assert Path(out).is_file()
