"""Packaging and architecture invariants: cgkit.properties installs under cgkit (no top-level
``properties`` package), the package list in pyproject.toml matches the folders on disk, and
no strict-JSON or output-folder helper is bypassed."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _declared_packages() -> list[str]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return sorted(cfg["tool"]["setuptools"]["packages"])


def test_package_list_matches_disk():
    on_disk = sorted({".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "cgkit").rglob("__init__.py")}
                     | {"cgkit.properties"})
    assert _declared_packages() == on_disk


def test_cgkit_properties_importable_outside_the_checkout(tmp_path):
    code = ("import importlib.util, cgkit.properties.phonons as m; "
            "print(importlib.util.find_spec('properties') is None)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "True"


def test_wheel_has_no_top_level_properties(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {proc.stderr.strip()[-300:]}")
    wheel = next(tmp_path.glob("cgkit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"cgkit"}
    assert "cgkit/properties/phonons.py" in names


def test_strict_json_and_results_protocol(tmp_path):
    from cgkit.jsonutil import loads_strict, write_json
    from cgkit.results import Results
    import numpy as np

    p = write_json(tmp_path / "s.json", {"a": float("nan"), "b": np.array([1.0, np.inf]), "c": -np.inf})
    data = loads_strict(p.read_text())
    assert data == {"a": None, "b": [1.0, "inf"], "c": "-inf"}
    text = Results(x=np.float32(np.nan), y=2).to_json(tmp_path / "r.json")
    assert loads_strict(text) == {"x": None, "y": 2}
    with pytest.raises(ValueError):
        loads_strict('{"a": NaN}')
    assert json.loads((tmp_path / "r.json").read_text()) == {"x": None, "y": 2}
