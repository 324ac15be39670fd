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
