"""TF-CLIP model: every switch combination, positional-embedding resize, local weights, losses, optimiser."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from torch import nn

from trainers.tfclip.backbone import TokenEncoder, WeightsError, resize_positional_embedding
from trainers.tfclip.config import resolve_config
from trainers.tfclip.losses import OnlineLabelSmoothing, ReIDTask, batch_hard_triplet
from trainers.tfclip.model import TFCLIP
from trainers.tfclip.optim import centralize_gradients, lr_factor

CLASSES = 5
CLIPS = torch.randn(3, 4, 3, 64, 32, generator=torch.Generator().manual_seed(0))
CAMERAS = torch.tensor([0, 4, 5])


def _model(*, memory: bool = True, **model: object) -> TFCLIP:
    loss = {} if memory else {"v2m_weight": 0.0}
    optim = {}
    if model.get("tmd") is False:
        loss, optim = {**loss, "frame_weight": 0.0}, {"classifier_lr_parts": []}
    config = resolve_config({"preset": "tiny-cpu", "model": model, "loss": loss, "optim": optim})
    rows = torch.randn(CLASSES, 64) if config.uses_memory else None
    return TFCLIP(config.model, num_classes=CLASSES, image_size=(64, 32), seq_len=4, seed=0, memory=rows)


SWITCHES = list(
    itertools.product(
        ["mean", "attention"],  # temporal_pool
        ["bn", "in"],  # neck
        [True, False],  # tmd
        [None, "additive", "alpha"],  # memory off / update rule
        [True, False],  # frame_position
        [0.0, 1.0],  # sie_coef
    )
)


@pytest.mark.parametrize(("pool", "neck", "tmd", "memory", "frame_position", "sie"), SWITCHES)
def test_every_switch_combination_runs(
    pool: str, neck: str, tmd: bool, memory: str | None, frame_position: bool, sie: float
) -> None:
    model = _model(
        temporal_pool=pool,
        neck=neck,
        tmd=tmd,
        memory=memory is not None,
        memory_update=memory or "additive",
        frame_position=frame_position,
        sie_coef=sie,
        test_features=("cls", "proj", "tmd") if tmd else ("cls", "proj"),
    )
    out = model(CLIPS, CAMERAS)
    parts = ["cls", "proj", *(["tmd"] if tmd else [])]
    for part in parts:
        assert out[f"logits_{part}"].shape == (3, CLASSES)
        assert out[f"feat_{part}"].shape == (3, 64)
    assert ("logits_tmd" in out) == tmd
    assert ("frame_logits" in out) == tmd
    if tmd:
        assert out["frame_logits"].shape == (12, CLASSES)
    assert ("v2m_logits" in out) == (memory is not None)
    model.eval()
    assert model.test_features(CLIPS, CAMERAS).shape == (3, 64 * len(parts))


def test_camera_and_frame_embeddings_change_features() -> None:
    model = _model(frame_position=True).eval()
    with torch.no_grad():  # it starts at zero (X-TFCLIP); a trained one is not
        model.frame_embedding.normal_(std=0.5)
    base = model.test_features(CLIPS, CAMERAS)
    assert not torch.allclose(base, model.test_features(CLIPS, torch.tensor([1, 1, 1])))
    assert not torch.allclose(base, model.test_features(CLIPS.flip(1), CAMERAS))  # frame order matters


def test_stride_gives_overlapping_patches() -> None:
    encoder = TokenEncoder("tiny-cpu", image_size=(64, 32), stride=6, seed=0)
    assert encoder.grid == ((64 - 8) // 6 + 1, (32 - 8) // 6 + 1)
    assert encoder(torch.randn(2, 3, 64, 32)).shape == (2, 1 + encoder.grid[0] * encoder.grid[1], 64)
    with pytest.raises(ValueError, match="stride is 9"):
        TokenEncoder("tiny-cpu", image_size=(64, 32), stride=9)


def test_positional_embedding_resize_keeps_cls_and_constants() -> None:
    embedding = torch.randn(1 + 14 * 14, 16)
    resized = resize_positional_embedding(embedding, (16, 8), "bilinear")
    assert resized.shape == (1 + 16 * 8, 16)
    assert torch.equal(resized[0], embedding[0])
    constant = torch.cat([torch.zeros(1, 4), torch.ones(196, 4)])
    assert torch.allclose(resize_positional_embedding(constant, (16, 8), "bicubic")[1:], torch.ones(128, 4))
    bilinear = resize_positional_embedding(embedding, (16, 8), "bilinear")
    bicubic = resize_positional_embedding(embedding, (16, 8), "bicubic")
    assert not torch.allclose(bilinear, bicubic)
    assert resize_positional_embedding(embedding, (14, 14), "bilinear") is embedding
    with pytest.raises(ValueError, match="non-square"):
        resize_positional_embedding(torch.randn(1 + 12, 4), (2, 2), "bilinear")


class _ClipLike(nn.Module):
    """Stands in for a CLIP model: weights under ``visual.`` as in OpenAI and open_clip files."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("kind", ["open_clip", "torchscript"])
def test_loads_local_weights_and_resizes_positions(kind: str, tmp_path: Path) -> None:
    source = TokenEncoder("tiny-cpu", image_size=(112, 112), seed=1)  # 14 x 14 grid, like CLIP at 224 px
    path = tmp_path / "weights.pt"
    if kind == "open_clip":
        state = {f"module.visual.{k}": v for k, v in source.tower.state_dict().items()}
        torch.save({"state_dict": state}, path)
    else:
        traced = torch.jit.trace(_ClipLike(source.tower), torch.randn(1, 3, 112, 112))
        traced.save(str(path))
    loaded = {}
    for mode in ("bilinear", "bicubic"):
        loaded[mode] = TokenEncoder(
            "tiny-cpu", image_size=(64, 32), pos_interpolation=mode, weights=path, seed=2
        )
    target = loaded["bilinear"].tower.state_dict()
    for key, value in source.tower.state_dict().items():
        if key != "positional_embedding":
            assert torch.equal(target[key], value), key
    expected = resize_positional_embedding(source.tower.positional_embedding.data, (8, 4), "bilinear")
    assert torch.equal(target["positional_embedding"], expected)
    assert not torch.equal(
        target["positional_embedding"], loaded["bicubic"].tower.state_dict()["positional_embedding"]
    )


def test_bad_weights_files(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        TokenEncoder("tiny-cpu", image_size=(64, 32), weights=tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(WeightsError, match="not a TorchScript or torch checkpoint"):
        TokenEncoder("tiny-cpu", image_size=(64, 32), weights=tmp_path / "junk.pt")
    torch.save({"state_dict": {"text.weight": torch.zeros(1)}}, tmp_path / "text.pt")
    with pytest.raises(WeightsError, match="no 'visual"):
        TokenEncoder("tiny-cpu", image_size=(64, 32), weights=tmp_path / "text.pt")
    torch.save({"visual.conv1.weight": torch.zeros(3, 3, 2, 2)}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="do not fit"):
        TokenEncoder("tiny-cpu", image_size=(64, 32), weights=tmp_path / "other.pt")


def test_batch_hard_triplet_hand_computed() -> None:
    # 1-D features: ids a = {0, 1}, b = {3, 5}; margin 1.
    features = torch.tensor([[0.0], [1.0], [3.0], [5.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # anchor 0: pos 1, neg 3 -> relu(1 - 3 + 1) = 0; anchor 1: pos 1, neg 2 -> 0
    # anchor 3: pos 2, neg 2 -> 1;                anchor 5: pos 2, neg 4 -> 0
    assert batch_hard_triplet(features, labels, margin=1.0).item() == pytest.approx(0.25, abs=1e-5)
    assert batch_hard_triplet(features, torch.tensor([0, 1, 2, 3]), margin=1.0).item() == 0.0  # no positives


def test_online_label_smoothing_learns_soft_labels() -> None:
    ols = OnlineLabelSmoothing(num_classes=3, alpha=0.5, smoothing=0.1)
    initial = ols.soft.clone()
    assert torch.allclose(initial.sum(dim=1), torch.ones(3))
    logits = torch.tensor([[4.0, 1.0, 0.0], [3.0, 0.0, 2.0], [0.0, 0.0, 5.0]])
    labels = torch.tensor([0, 0, 1])  # two correct predictions of class 0, one wrong for class 1
    ols.train()
    ols(logits, labels)
    ols.next_epoch()
    probs = torch.softmax(logits[:2], dim=1).mean(dim=0)
    assert torch.allclose(ols.soft[0], probs)
    assert torch.equal(ols.soft[1], torch.zeros(3))  # no correct sample: a zero target next epoch
    assert ols.counts.sum() == 0


def test_task_combines_weighted_terms_and_skips_zero_weights() -> None:
    model = _model()
    out = model(CLIPS, CAMERAS)
    labels = torch.tensor([0, 0, 1])
    config = resolve_config({"preset": "tiny-cpu"}).loss
    terms = ReIDTask(config, num_classes=CLASSES, parts=model.parts, seq_len=4)(out, labels)
    assert set(terms) == {"id", "triplet", "v2m", "frame", "loss"}
    assert terms["loss"].item() == pytest.approx(
        sum(terms[k].item() for k in ("id", "triplet", "v2m", "frame"))
    )
    no_v2m = config.model_copy(update={"v2m_weight": 0.0, "frame_weight": 0.0})
    assert set(ReIDTask(no_v2m, num_classes=CLASSES, parts=model.parts, seq_len=4)(out, labels)) == {
        "id",
        "triplet",
        "loss",
    }
    nothing = config.model_copy(
        update={"id_weight": 0.0, "triplet_weight": 0.0, "v2m_weight": 0.0, "frame_weight": 0.0}
    )
    with pytest.raises(ValueError, match="every loss weight is 0"):
        ReIDTask(nothing, num_classes=CLASSES, parts=model.parts, seq_len=4)(out, labels)


def test_gradient_centralisation() -> None:
    layer = nn.Linear(4, 3)
    layer(torch.randn(5, 4)).pow(2).sum().backward()
    bias_grad = layer.bias.grad.clone()
    centralize_gradients(layer)
    assert torch.allclose(layer.weight.grad.mean(dim=1), torch.zeros(3), atol=1e-6)
    assert torch.equal(layer.bias.grad, bias_grad)


def test_learning_rate_schedule() -> None:
    optim = resolve_config({"optim": {"epochs": 80, "warmup_epochs": 10, "milestones": [30, 50]}}).optim
    assert lr_factor(0, optim) == pytest.approx(0.1)
    assert lr_factor(5, optim) == pytest.approx(0.55)
    assert lr_factor(10, optim) == 1.0
    assert lr_factor(30, optim) == pytest.approx(0.1)
    assert lr_factor(55, optim) == pytest.approx(0.01)
    cosine = optim.model_copy(update={"schedule": "cosine"})
    assert lr_factor(10, cosine) == pytest.approx(1.0)
    assert lr_factor(45, cosine) == pytest.approx(0.5)
    assert lr_factor(80, cosine) == pytest.approx(0.0, abs=1e-9)
