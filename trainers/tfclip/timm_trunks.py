"""timm entrypoints of our own tiny trunks, registered in timm's model registry when this module is imported.

open_clip builds a timm-trunk tower with ``timm.create_model(timm_model_name, ...)`` and passes no
architecture arguments, so a tiny EVA for CPU runs has to be a registered timm model name - a few-line
factory, not a copied module. :mod:`trainers.tfclip.backbone` imports this module (after open_clip's
torchvision workaround) before it builds any timm-trunk tower.

``agvp_eva02_tiny_cpu`` keeps EVA02-CLIP's block recipe - timm ``eva02_large_patch14_clip_224``: separate
q/k/v projections, SwiGLU MLP of ratio 4 * 2 / 3 with its inner LayerNorm, the attention's inner LayerNorm,
2-D rotary position embeddings rescaled to a reference grid, an absolute positional embedding and CLS-token
pooling - at 2 blocks, width 64 (2 heads), patch 8 and a 64 x 64 native input (an 8 x 8 grid, square like
CLIP pre-training).
"""

from __future__ import annotations

from typing import Any

from trainers.openclip_compat import ensure_torchvision_importable

ensure_torchvision_importable()  # timm imports torchvision, which a CPU torch cannot load without this

from timm.models import build_model_with_cfg, register_model  # noqa: E402
from timm.models.eva import Eva  # noqa: E402

__all__ = ["agvp_eva02_tiny_cpu"]

#: Read by timm's register_model (pretrained config of each entrypoint): no weights anywhere, CLIP's
#: 64 x 64 input for this size.
default_cfgs: dict[str, dict[str, Any]] = {
    "agvp_eva02_tiny_cpu": {"input_size": (3, 64, 64), "num_classes": 0},
}


@register_model
def agvp_eva02_tiny_cpu(pretrained: bool = False, **kwargs: Any) -> Eva:
    if pretrained:
        raise ValueError("agvp_eva02_tiny_cpu has no pre-trained weights (it exists for CPU tests)")
    args: dict[str, Any] = {
        "img_size": 64,
        "patch_size": 8,
        "embed_dim": 64,
        "depth": 2,
        "num_heads": 2,
        "mlp_ratio": 4 * 2 / 3,
        "qkv_fused": False,
        "swiglu_mlp": True,
        "scale_mlp": True,
        "scale_attn_inner": True,
        "use_rot_pos_emb": True,
        "ref_feat_shape": (8, 8),  # the native grid, as EVA02-L-14 uses its 224 px grid (16, 16)
        "global_pool": "token",
    }
    args.update(kwargs)
    return build_model_with_cfg(Eva, "agvp_eva02_tiny_cpu", pretrained, **args)
