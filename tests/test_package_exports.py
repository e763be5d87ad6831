from __future__ import annotations

import subprocess
import sys

import pytest

import trainers.data
import trainers.evaluation


@pytest.mark.parametrize("package", [trainers.data, trainers.evaluation])
def test_every_public_name_resolves(package: object) -> None:
    for name in package.__all__:  # type: ignore[attr-defined]
        assert getattr(package, name) is not None
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        package.nope  # type: ignore[attr-defined]  # noqa: B018


def test_torch_free_paths_do_not_import_torch() -> None:
    code = (
        "import sys, hpo.cli, trainers.data.index, trainers.data.synth, trainers.evaluation.metrics; "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_every_package_folder_has_an_init() -> None:
    """setuptools' find (pyproject) skips folders without __init__.py: a non-editable install (the Docker
    image) would silently lack them."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    missing = [
        str(folder.relative_to(root))
        for top in ("hpo", "trainers", "service")
        for folder in [root / top, *(root / top).rglob("*")]
        if folder.is_dir() and any(folder.glob("*.py")) and not (folder / "__init__.py").exists()
    ]
    assert not missing, missing
