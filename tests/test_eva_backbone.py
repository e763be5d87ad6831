"""EVA-CLIP towers (open_clip ``TimmModel`` around a timm ``Eva`` trunk) behind ``TokenEncoder``, the tiny EVA
that runs their code path on CPU, and the ``tfclip-ag-vpreid`` preset (challenge report, Appendix A.2).

Reference code pinned here (installed versions: open_clip 3.3.0, timm 1.0.31; paths inside their repositories
mlfoundations/open_clip and huggingface/pytorch-image-models):

- open_clip ``src/open_clip/timm_model.py`` L56-66: with ``timm_proj`` null (every EVA config) the trunk is
  built with ``num_classes=embed_dim`` and ``global_pool='token'``, so the trunk's ``head`` Linear is the
  projection; ``forward`` L212-215 is trunk then ``self.head``. ``src/open_clip/model.py`` L144-147: timm
  towers ignore ``quick_gelu``.
- timm ``timm/models/eva.py``: ``_pos_embed`` L976-1036 (CLS prepended, absolute embedding added, then RoPE
  for the grid), ``forward_features`` L1141-1178 (norm_pre, blocks with the RoPE, final norm),
  ``set_input_size`` L944-974 (positional embedding resampled and RoPE ``update_feat_shape``),
  ``eva02_large_patch14_clip_224`` L2253-2272 (EVA02-L-14's trunk, ``ref_feat_shape=(16, 16)``),
  ``checkpoint_filter_fn`` L1316-1317 (open_clip EVA checkpoints are keyed ``visual.trunk.*``) and L1337
  (RoPE buffers are not weights). ``timm/layers/pos_embed_sincos.py`` L180-182: RoPE positions rescaled per
  axis to the reference grid.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from trainers.data.config import IMAGENET_MEAN, IMAGENET_STD
from trainers.engine import _autocast
from trainers.openclip_compat import import_open_clip
from trainers.tfclip.backbone import (
    TokenEncoder,
    WeightsError,
    available_backbones,
    resize_positional_embedding,
    vision_config,
)
from trainers.tfclip.config import resolve_config
from trainers.tfclip.losses import ReIDTask
from trainers.tfclip.model import TFCLIP
from trainers.tfclip.optim import lr_factor

TINY = "tiny-eva-cpu"
WIDTH, EMBED = 64, 32  # the tiny EVA's trunk width and joint embedding


def _frames(height: int = 64, width: int = 32, n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _save(encoder: TokenEncoder, path: Path, **extra: torch.Tensor) -> Path:
    """An open_clip-style checkpoint: the tower under ``visual.``, plus whatever else a CLIP file holds."""
    state = {f"visual.{k}": v for k, v in encoder.tower.state_dict().items()}
    torch.save({"state_dict": {**state, **extra}}, path)
    return path


# ------------------------------------------------------------------------------------------ shapes and path


@pytest.mark.parametrize(
    ("size", "grid"),
    [((224, 224), (28, 28)), ((256, 128), (32, 16)), ((70, 36), (8, 4))],
    ids=["224x224", "256x128", "patch-does-not-divide"],
)
def test_tiny_eva_tokens_cls_and_projection_shapes(size: tuple[int, int], grid: tuple[int, int]) -> None:
    encoder = TokenEncoder(TINY, image_size=size, seed=0)
    assert (encoder.grid, encoder.width, encoder.embed_dim) == (grid, WIDTH, EMBED)
    tokens = encoder(_frames(*size))
    assert tokens.shape == (2, 1 + grid[0] * grid[1], WIDTH)
    assert encoder.project(tokens[:, 0]).shape == (2, EMBED)
    assert encoder.project(tokens).shape == (2, 1 + grid[0] * grid[1], EMBED)


def test_tiny_eva_is_an_eva02_trunk_inside_open_clips_timm_model() -> None:
    timm_model = import_open_clip().timm_model.TimmModel
    from timm.models.eva import Eva

    encoder = TokenEncoder(TINY, image_size=(64, 32), seed=0)
    tower = encoder.tower
    assert isinstance(tower, timm_model) and isinstance(tower.trunk, Eva)
    assert len(tower.trunk.blocks) == 2 and tower.trunk.rope is not None  # RoPE, like EVA02
    assert hasattr(tower.trunk.blocks[0].mlp, "fc1_g")  # SwiGLU, like EVA02
    assert tower.trunk.global_pool == "token"
    assert TINY in available_backbones() and "EVA02-L-14" in available_backbones()


def test_tokens_are_timms_forward_features_and_cls_projection_is_the_tower_output() -> None:
    # open_clip timm_model.py L212-215 (trunk -> head) with timm eva.py forward_features L1141-1178 and
    # forward_head L1180-1193 (token pool -> fc_norm -> head).
    encoder = TokenEncoder(TINY, image_size=(64, 32), seed=3).eval()
    with torch.no_grad():
        encoder.tower.trunk.head.bias.normal_()  # timm starts it at zero; a trained one is not
        frames = _frames()
        tokens = encoder(frames)
        assert torch.allclose(tokens, encoder.tower.trunk.forward_features(frames), atol=1e-6)
        assert torch.allclose(encoder.project(tokens[:, 0]), encoder.tower(frames), atol=1e-6)
        head = encoder.tower.trunk.head
        assert torch.allclose(encoder.project(tokens), tokens @ head.weight.T + head.bias, atol=1e-6)


def test_rope_is_rebuilt_for_the_target_grid_as_timm_builds_it_for_that_size() -> None:
    # timm eva.py set_input_size L944-974; pos_embed_sincos.py L180-182 (positions rescaled to ref grid).
    import timm

    encoder = TokenEncoder(TINY, image_size=(64, 32), seed=0).eval()
    rope = encoder.tower.trunk.rope
    assert list(rope.feat_shape) == [8, 4]
    direct = timm.create_model("agvp_eva02_tiny_cpu", img_size=(64, 32), num_classes=EMBED).eval()
    direct.load_state_dict(encoder.tower.trunk.state_dict())
    assert torch.equal(rope.get_embed(), direct.rope.get_embed())
    native = TokenEncoder(TINY, image_size=(64, 64), seed=0).tower.trunk.rope.get_embed()
    assert rope.get_embed().shape[0] == 8 * 4 != native.shape[0]
    with torch.no_grad():
        assert torch.allclose(encoder(_frames()), direct.forward_features(_frames()), atol=1e-6)


def test_side_information_is_added_to_the_cls_token_before_the_blocks() -> None:
    encoder = TokenEncoder(TINY, image_size=(64, 32), seed=0).eval()
    frames = _frames()
    side = torch.randn(WIDTH, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        base = encoder(frames)
        shifted = encoder(frames, side.expand(2, -1))
        assert not torch.allclose(base, shifted)
        assert torch.equal(encoder(frames, torch.zeros(2, WIDTH)), base)
        # Adding it to the CLS token after the positional embedding = a CLS token moved by it: the same
        # place as the ViT (X-TFCLIP's camera embedding on x[:, 0] before ln_pre).
        encoder.tower.trunk.cls_token += side
        assert torch.allclose(encoder(frames), shifted, atol=1e-6)


def test_quick_gelu_does_not_change_a_timm_trunk() -> None:
    # open_clip model.py L144-147: timm towers use their own activations whatever quick_gelu says.
    frames = _frames()
    with torch.no_grad():
        quick = TokenEncoder(TINY, image_size=(64, 32), quick_gelu=True, seed=0)(frames)
        exact = TokenEncoder(TINY, image_size=(64, 32), quick_gelu=False, seed=0)(frames)
    assert torch.equal(quick, exact)


def test_overlapping_patches_and_unsupported_timm_trunks_are_refused() -> None:
    with pytest.raises(ValueError, match=r"stride is 4, .* supports only non-overlapping patches"):
        TokenEncoder(TINY, image_size=(64, 32), stride=4)
    assert TokenEncoder(TINY, image_size=(64, 32), stride=8).grid == (8, 4)  # = the patch size: fine
    with pytest.raises(ValueError, match="smaller than the patch size 8"):
        TokenEncoder(TINY, image_size=(64, 6))
    with pytest.raises(ValueError, match=r"timm trunk vit_base_patch16_siglip_224 with 'map' pooling"):
        vision_config("ViT-B-16-SigLIP")
    assert "ViT-B-16-SigLIP" not in available_backbones()
    with pytest.raises(ValueError, match="did you mean EVA02-L-14"):
        vision_config("EVA02-L-41")


# ------------------------------------------------------------------------------------------ EVA02-L-14 itself


@pytest.mark.parametrize(
    ("size", "grid"), [((224, 224), (16, 16)), ((256, 128), (18, 9))], ids=["224x224", "256x128"]
)
def test_eva02_l14_builds_with_its_own_shapes(size: tuple[int, int], grid: tuple[int, int]) -> None:
    # timm eva.py eva02_large_patch14_clip_224 L2253-2272: 24 blocks, width 1024, patch 14, RoPE with
    # ref_feat_shape (16, 16); open_clip EVA02-L-14.json: embed_dim 768. On the meta device: shapes only.
    # 256 x 128 with patch 14: grid_size's rule, the last 4 pixel rows and 2 columns are not seen.
    with torch.device("meta"):
        encoder = TokenEncoder("EVA02-L-14", image_size=size)
        tokens = encoder(torch.empty(2, 3, *size))
        projected = encoder.project(tokens[:, 0])
    trunk = encoder.tower.trunk
    assert (encoder.grid, encoder.width, encoder.embed_dim, len(trunk.blocks)) == (grid, 1024, 768, 24)
    assert tokens.shape == (2, 1 + grid[0] * grid[1], 1024) and projected.shape == (2, 768)
    assert trunk.pos_embed.shape == (1, 1 + grid[0] * grid[1], 1024)
    assert list(trunk.rope.feat_shape) == list(grid) and tuple(trunk.rope.ref_feat_shape) == (16, 16)
    assert 3.0e8 < sum(p.numel() for p in encoder.parameters()) < 3.1e8


def test_preset_model_builds_with_eva02_l14() -> None:
    # TMD / SSP heads must divide the EVA widths (1024, 768); shapes only, on the meta device.
    config = resolve_config({"preset": "tfclip-ag-vpreid"})
    with torch.device("meta"):
        model = TFCLIP(
            config.model, num_classes=10, image_size=(224, 224), seq_len=8, memory=torch.zeros(10, 768)
        )
        out = model(torch.empty(2, 8, 3, 224, 224), torch.tensor([0, 1]))
    assert out["v2m_logits"].shape == (2, 10) and out["feat_cls"].shape == (2, 1024)
    assert out["feat_proj"].shape == (2, 768) and out["frame_logits"].shape == (16, 10)


# ------------------------------------------------------------------------------------------ weights


def test_checkpoint_at_one_grid_loads_at_another(tmp_path: Path) -> None:
    source = TokenEncoder(TINY, image_size=(112, 112), seed=1)  # 14 x 14 grid, like CLIP at 224 px / 16
    path = _save(source, tmp_path / "open_clip_eva.pt", **{"text.token_embedding.weight": torch.ones(3, 2)})
    original = source.tower.state_dict()
    loaded = {
        mode: TokenEncoder(TINY, image_size=(64, 32), pos_interpolation=mode, weights=path, seed=2)
        for mode in ("bilinear", "bicubic")
    }
    target = loaded["bilinear"].tower.state_dict()
    assert set(target) == set(original)
    for key, value in original.items():
        if key != "trunk.pos_embed":
            assert torch.equal(target[key], value), key
    embedding = target["trunk.pos_embed"]
    assert embedding.shape == (1, 1 + 8 * 4, WIDTH)
    assert torch.equal(embedding[0, 0], original["trunk.pos_embed"][0, 0])  # the CLS position is kept
    expected = resize_positional_embedding(original["trunk.pos_embed"][0], (8, 4), "bilinear")
    assert torch.equal(embedding[0], expected)
    assert not torch.equal(embedding, loaded["bicubic"].tower.state_dict()["trunk.pos_embed"])
    wide = TokenEncoder(TINY, image_size=(256, 128), weights=path, seed=2)
    assert wide.tower.trunk.pos_embed.shape == (1, 1 + 32 * 16, WIDTH)
    assert wide(_frames(256, 128)).shape == (2, 1 + 32 * 16, WIDTH)


def test_weights_round_trip_at_the_same_grid(tmp_path: Path) -> None:
    source = TokenEncoder(TINY, image_size=(64, 32), seed=1).eval()
    path = _save(source, tmp_path / "same.pt")
    copy = TokenEncoder(TINY, image_size=(64, 32), weights=path, seed=9).eval()
    with torch.no_grad():
        assert torch.equal(copy(_frames()), source(_frames()))
        fresh = TokenEncoder(TINY, image_size=(64, 32), seed=9).eval()
        assert not torch.allclose(fresh(_frames()), source(_frames()))


def test_wrong_weight_files_raise_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"absent\.pt: weights file does not exist"):
        TokenEncoder(TINY, image_size=(64, 32), weights=tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match=r"junk\.pt: not a TorchScript or torch checkpoint"):
        TokenEncoder(TINY, image_size=(64, 32), weights=tmp_path / "junk.pt")
    vit = _save(TokenEncoder("tiny-cpu", image_size=(64, 32), seed=0), tmp_path / "vit.pt")
    with pytest.raises(WeightsError, match=r"vit\.pt: no 'visual\.trunk\.\*' weights: backbone tiny-eva-cpu"):
        TokenEncoder(TINY, image_size=(64, 32), weights=vit)
    eva = TokenEncoder(TINY, image_size=(64, 32), seed=0)
    with pytest.raises(
        WeightsError, match=r"eva\.pt: weights do not fit this backbone \(e\.g\. class_embedding"
    ):
        TokenEncoder("tiny-cpu", image_size=(64, 32), weights=_save(eva, tmp_path / "eva.pt"))
    state = {f"visual.{k}": v for k, v in eva.tower.state_dict().items() if "blocks.1." not in k}
    torch.save(state, tmp_path / "short.pt")
    with pytest.raises(WeightsError, match=r"short\.pt: weights do not fit .*trunk\.blocks\.1\."):
        TokenEncoder(TINY, image_size=(64, 32), weights=tmp_path / "short.pt")
    state = {f"visual.{k}": v for k, v in eva.tower.state_dict().items()}
    state["visual.trunk.head.weight"] = torch.zeros(EMBED + 1, WIDTH)
    torch.save(state, tmp_path / "head.pt")
    with pytest.raises(WeightsError, match=r"head\.pt: weights do not fit .*trunk\.head\.weight"):
        TokenEncoder(TINY, image_size=(64, 32), weights=tmp_path / "head.pt")


# ------------------------------------------------------------------------------------------ the TF-CLIP model


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_tfclip_runs_forward_and_backward_on_the_tiny_eva(precision: str) -> None:
    config = resolve_config(
        {"preset": "tiny-cpu", "model": {"backbone": TINY}, "optim": {"precision": precision}},
        overrides={"data.sampling.seq_len": 4},
    )
    classes = 5
    memory = torch.randn(classes, EMBED, generator=torch.Generator().manual_seed(7))
    model = TFCLIP(config.model, num_classes=classes, image_size=(64, 32), seq_len=4, seed=0, memory=memory)
    task = ReIDTask(config.loss, num_classes=classes, parts=model.parts, seq_len=4)
    clips = torch.randn(4, 4, 3, 64, 32, generator=torch.Generator().manual_seed(0))
    cameras, labels = torch.tensor([0, 1, 4, 5]), torch.tensor([0, 0, 1, 1])
    with _autocast(config, torch.device("cpu")):
        out = model(clips, cameras)
        terms = task(out, labels)
    assert out["feat_cls"].shape == (4, WIDTH) and out["feat_proj"].shape == (4, EMBED)
    assert out["v2m_logits"].shape == (4, classes) and out["frame_logits"].shape == (16, classes)
    assert torch.isfinite(terms["loss"])
    assert set(terms) >= {"loss", "id", "triplet", "v2m", "frame"}
    terms["loss"].backward()
    trunk = model.encoder.tower.trunk
    for parameter in (
        trunk.blocks[0].attn.q_proj.weight,
        trunk.pos_embed,
        trunk.cls_token,
        trunk.head.weight,
    ):
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0
    assert model.camera_embedding.grad is not None and model.camera_embedding.grad.abs().sum() > 0
    model.eval()
    assert model.test_features(clips, cameras).shape == (4, WIDTH + EMBED + WIDTH)


# ------------------------------------------------------------------------------------------ the preset


def test_tfclip_ag_vpreid_preset_has_the_reports_recipe() -> None:
    # /work/shared/seed/ag-vpreid-2025-challenge-report.txt, Appendix A.2 (TFCLIP-AG-VPReID).
    config = resolve_config({"preset": "tfclip-ag-vpreid"})
    assert config.preset == "tfclip-ag-vpreid"
    model, loss, optim, data = config.model, config.loss, config.optim, config.data
    assert model.backbone == "EVA02-L-14"
    assert (model.tmd_heads, model.ssp_heads) == (16, 12)  # 64-d heads on 1024 / 768, as TF-CLIP on 768 / 512
    assert (data.transform.height, data.transform.width) == (224, 224)
    assert (data.batch.p, data.batch.k, data.batch.batch_size, data.sampling.seq_len) == (2, 4, 8, 8)
    assert (data.transform.mean, data.transform.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert (loss.id_weight, loss.triplet_weight, loss.v2m_weight) == (1.0, 1.0, 1.0)
    assert (loss.triplet_margin, loss.label_smoothing, loss.online_label_smoothing) == (0.3, 0.1, False)
    assert (optim.epochs, optim.schedule, optim.milestones, optim.gamma) == (80, "multistep", (30, 50), 0.1)
    # "linearly increases from 5e-7 to 5e-6" over the first 10 epochs, then / 10 at 30 and at 50.
    lr = [optim.lr * lr_factor(epoch, optim) for epoch in range(80)]
    assert lr[0] == pytest.approx(5e-7) and lr[10] == pytest.approx(5e-6) and lr[29] == pytest.approx(5e-6)
    assert all(a < b for a, b in itertools.pairwise(lr[:11]))
    assert lr[30] == pytest.approx(5e-7) and lr[49] == pytest.approx(5e-7)
    assert lr[50] == pytest.approx(5e-8) and lr[79] == pytest.approx(5e-8)
    # TF-CLIP's code value of the ID weight stays one key away.
    assert resolve_config({"preset": "tfclip-ag-vpreid", "loss": {"id_weight": 0.25}}).loss.id_weight == 0.25
