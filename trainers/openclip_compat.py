"""The one place that imports open_clip (and therefore torchvision). Every other module calls
:func:`import_open_clip`.

Why this exists: the PyPI torchvision wheel is a CUDA build. Installed next to a CPU-only torch, its C++
extension (``torchvision/_C.so``) fails to load; torchvision then skips most of its op registrations but
still registers fake kernels for ``torchvision::nms`` and ``torchvision::qnms`` unconditionally, so
``import torchvision`` dies with "operator torchvision::nms does not exist" - and open_clip imports it.

The workaround runs only when the extension really failed to load: it defines the two missing op *schemas*
(no kernels), which is all the import needs. Calling ``torchvision.ops.nms`` would still fail, loudly; we
never call it. With a matching torch/torchvision pair (e.g. a GPU install) the extension loads and nothing
is done.
"""

from __future__ import annotations

import glob
import importlib.util
import os
from types import ModuleType

import torch

# Schemas as declared by torchvision's C++ sources; only the ops the import itself touches.
_MISSING_OP_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
# Held for the life of the process: a torch.library.Library drops its definitions when garbage-collected.
_fallback_library: torch.library.Library | None = None


def _torchvision_op_exists(name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def _load_torchvision_extension() -> bool:
    """Try to load torchvision's compiled ops without importing torchvision. True if the ops are available."""
    if _torchvision_op_exists("nms"):
        return True
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    package_dir = next(iter(spec.submodule_search_locations))
    for library in sorted(glob.glob(os.path.join(package_dir, "_C.*"))):
        try:
            torch.ops.load_library(library)
        except (OSError, RuntimeError):
            continue
        return _torchvision_op_exists("nms")
    return False


def ensure_torchvision_importable() -> bool:
    """Make ``import torchvision`` work on a CPU torch. Returns True if the fallback schemas were defined."""
    global _fallback_library
    if _fallback_library is not None or _load_torchvision_extension():
        return False
    library = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _MISSING_OP_SCHEMAS:
        library.define(schema)
    _fallback_library = library
    return True


def import_open_clip() -> ModuleType:
    """Import and return the ``open_clip`` module, applying the torchvision workaround first if needed."""
    ensure_torchvision_importable()
    import open_clip

    return open_clip
