"""The torchvision-on-CPU-torch workaround (trainers/openclip_compat.py). Each check runs in a fresh
interpreter: op registrations are process-global, so an in-process test could pass by accident."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def _extension_loads() -> bool:
    probe = _run("import trainers.openclip_compat as c; print(c._load_torchvision_extension())")
    assert probe.returncode == 0, probe.stderr
    return probe.stdout.strip() == "True"


def test_open_clip_imports_through_the_shim() -> None:
    result = _run(
        "from trainers.openclip_compat import import_open_clip\n"
        "oc = import_open_clip()\n"
        "import torchvision\n"
        "print(oc.__name__, torchvision.__version__)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("open_clip ")


def test_fallback_only_when_the_extension_cannot_load() -> None:
    result = _run(
        "from trainers.openclip_compat import ensure_torchvision_importable\n"
        "print(ensure_torchvision_importable(), ensure_torchvision_importable())"
    )
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.split()
    assert first == str(not _extension_loads())
    assert second == "False"  # idempotent: defined at most once


def test_plain_import_fails_without_the_shim_when_the_extension_is_broken() -> None:
    # Documents why the shim exists; on a matching torch/torchvision pair both imports simply work.
    plain = _run("import torchvision")
    if _extension_loads():
        assert plain.returncode == 0
    else:
        assert "torchvision::nms does not exist" in plain.stderr
