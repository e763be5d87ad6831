"""ACP-VPReID (challenge report, Appendix A.3): each view-adaptive module's shape and effect, the modules as
switches of the one TF-CLIP model, the center and contrastive losses, the preset, and a short training run.

There is no public ACP-VPReID code (searched: no repository of the authors Rashidunnabi, Proença, Hambarde
holds it), so the modules follow the report's description (trainers/tfclip/acp.py says how each is read);
the two losses follow their reference implementations, cited at the tests that pin them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from trainers.data.config import IMAGENET_MEAN, IMAGENET_STD
from trainers.data.naming import Platform, platform_of_camera
from trainers.engine import fit, load_checkpoint
from trainers.tfclip.acp import (
    VIEWS,
    CrossViewAggregation,
    MotionGate,
    ScaleAdaptiveNorm,
    ViewMemory,
    ViewSpecificEncoding,
    view_ids,
)
from trainers.tfclip.config import PRESETS, LossConfig, TrainerConfig, flatten_dotted, resolve_config
from trainers.tfclip.losses import CenterLoss, ReIDTask, supervised_contrastive
from trainers.tfclip.model import TFCLIP
from trainers.tfclip.optim import build_optimizer, lr_factor

CLASSES, B, T, D = 5, 4, 4, 64
CAMERAS = torch.tensor([0, 2, 4, 5])  # cctv, wearable, aerial, aerial
LABELS = torch.tensor([0, 0, 1, 1])
AERIAL, CCTV, WEARABLE = (VIEWS.index(p) for p in (Platform.AERIAL, Platform.CCTV, Platform.WEARABLE))
SWITCHES = ("view_encoding", "memory", "motion_gate", "scale_norm", "cross_view")
ALL_ON = {f"model.acp.{switch}": True for switch in SWITCHES}


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


CLIPS = _randn(B, T, 3, 64, 32)


def _config(**overrides: Any) -> TrainerConfig:
    return resolve_config({"preset": "tiny-cpu"}, overrides={"data.sampling.seq_len": T, **overrides})


def _model(**overrides: Any) -> TFCLIP:
    config = _config(**overrides)
    torch.manual_seed(0)  # the non-encoder modules draw from the global generator
    memory = _randn(CLASSES, D, seed=7) if config.uses_memory else None
    return TFCLIP(config.model, num_classes=CLASSES, image_size=(64, 32), seq_len=T, seed=0, memory=memory)


# ------------------------------------------------------------------------------------------------------ views


def test_views_are_the_platforms_of_the_cameras() -> None:
    cameras = torch.arange(6)
    assert view_ids(cameras).tolist() == [VIEWS.index(platform_of_camera(c)) for c in range(6)]
    assert view_ids(cameras).tolist() == [CCTV, CCTV, WEARABLE, WEARABLE, AERIAL, AERIAL]


# ---------------------------------------------------------------------------------------- modules, one by one


def test_scale_norm_shape_identity_start_and_per_view_affine() -> None:
    norm = ScaleAdaptiveNorm(D)
    x, views = _randn(B, T, 9, D), view_ids(CAMERAS)
    out = norm(x, views)
    assert out.shape == x.shape
    torch.testing.assert_close(out, x)  # a normalisation's affine starts at (1, 0)
    with torch.no_grad():
        norm.scale[AERIAL] = 2.0
        norm.shift[CCTV] = 1.0
    out = norm(x, views)
    torch.testing.assert_close(out[2:], 2 * x[2:])  # the two aerial clips
    torch.testing.assert_close(out[0], x[0] + 1)  # the cctv clip
    torch.testing.assert_close(out[1], x[1])  # wearable: untouched
    assert norm(x[:, 0], views).shape == (B, 9, D)  # any (B, ..., D)


def test_view_encoding_shape_and_one_transformation_per_view() -> None:
    torch.manual_seed(0)
    encoding = ViewSpecificEncoding(D, dropout=0.0, quick_gelu=True)
    x = _randn(1, T, 9, D).expand(3, -1, -1, -1)
    out = encoding(x, torch.tensor([AERIAL, CCTV, AERIAL]))
    assert out.shape == x.shape
    assert not torch.allclose(out, x)  # the switch changes the output (small residual, not zero)
    assert not torch.allclose(out[0], out[1])  # same frames, another view: another transformation
    torch.testing.assert_close(out[0], out[2])  # same view: the same one
    assert encoding.down.shape == (len(VIEWS), D, D // 4) and encoding.up.shape == (len(VIEWS), D // 4, D)


def test_motion_gate_shape_and_gates_only_what_moves() -> None:
    torch.manual_seed(0)
    gate = MotionGate(D, dropout=0.0, quick_gelu=True)
    static = _randn(B, 1, 9, D).expand(-1, T, -1, -1)
    torch.testing.assert_close(gate(static), static)  # no difference: gate 2 sigmoid(0) = 1
    moving = _randn(B, T, 9, D)
    out = gate(moving)
    assert out.shape == moving.shape
    assert not torch.allclose(out, moving)
    assert gate(moving[:, :, 0]).shape == (B, T, D)  # frame features (B, T, D) too
    steps = MotionGate.differences(moving)
    torch.testing.assert_close(steps[:, 2], moving[:, 2] - moving[:, 1])
    torch.testing.assert_close(steps[:, 0], steps[:, 1])  # the first frame takes the second's difference
    torch.testing.assert_close(gate(moving[:, :1]), moving[:, :1])  # one frame: nothing moves


def test_memory_shape_empty_bank_reads_nothing_and_a_filled_one_changes_the_output() -> None:
    torch.manual_seed(0)
    memory = ViewMemory(D, slots=3, heads=2, dropout=0.0).eval()
    frames, views = _randn(B, T, D), view_ids(CAMERAS)
    out = memory(frames, views)
    assert out.shape == (B, T, D)
    torch.testing.assert_close(out, frames)  # empty banks
    assert memory.size.tolist() == [0, 0, 0]  # eval mode never writes
    memory.train()
    torch.testing.assert_close(memory(frames, views), frames)  # reads before it writes this batch
    expected = [0, 0, 0]
    for view in views.tolist():
        expected[view] += 1
    assert memory.size.tolist() == expected
    torch.testing.assert_close(memory.bank[AERIAL, :2], frames[2:].mean(dim=1))  # batch order, T-means
    memory.eval()
    after = memory(frames, views)
    for clip in range(B):  # every view's bank now holds a clip
        assert not torch.allclose(after[clip], frames[clip]), clip
    other = memory(frames, torch.full((B,), WEARABLE))  # the same frames read the wearable bank instead
    assert not torch.allclose(other[2:], after[2:])


def test_memory_bank_is_first_in_first_out_and_a_checkpointed_buffer() -> None:
    memory = ViewMemory(D, slots=3, heads=2, dropout=0.0).train()
    rows = torch.arange(5.0).unsqueeze(1).expand(-1, D)
    aerial = torch.full((5,), AERIAL)
    memory.write(rows[:2], aerial[:2])
    memory.write(rows[2:], aerial[2:])  # 5 clips into 3 slots: 3 and 4 overwrite 0 and 1
    assert memory.bank[AERIAL, :, 0].tolist() == [3.0, 4.0, 2.0]
    assert (memory.size[AERIAL].item(), memory.cursor[AERIAL].item()) == (3, 2)
    memory.write(torch.arange(10.0, 15.0).unsqueeze(1).expand(-1, D), aerial)  # more clips than slots
    # as if written one by one from the cursor (slot 2): 10 -> 2, 11 -> 0, 12 -> 1, 13 -> 2, 14 -> 0
    assert memory.bank[AERIAL, :, 0].tolist() == [14.0, 12.0, 13.0]
    assert memory.cursor[AERIAL].item() == 1
    state = memory.state_dict()
    assert {"bank", "size", "cursor"} <= set(state)
    assert not any(b.requires_grad for b in memory.buffers())
    fresh = ViewMemory(D, slots=3, heads=2, dropout=0.0)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.bank, memory.bank)


def test_cross_view_aggregation_shape_and_view_conditioning() -> None:
    torch.manual_seed(0)
    aggregate = CrossViewAggregation(D, heads=2, layers=1, dropout=0.0, quick_gelu=True).eval()
    frames = _randn(1, T, D).expand(2, -1, -1)
    out = aggregate(frames, torch.tensor([AERIAL, CCTV]))
    assert out.shape == (2, D)
    assert not torch.allclose(out[0], frames[0].mean(dim=0))  # not the mean pool ...
    assert torch.linalg.vector_norm(out[0] - frames[0].mean(dim=0)) < torch.linalg.vector_norm(out[0])
    assert not torch.allclose(out[0], out[1])  # ... and it depends on the view
    with pytest.raises(ValueError, match=r"model\.acp\.heads is 3, but must divide the backbone width 64"):
        CrossViewAggregation(D, heads=3, layers=1, dropout=0.0, quick_gelu=True)


# ------------------------------------------------------------------------------------ switches of the model


def test_defaults_build_no_acp_module() -> None:
    for preset in ("tfclip", "x-tfclip", "tiny-cpu"):
        assert not resolve_config({"preset": preset}).model.acp.frame_modules
        assert not resolve_config({"preset": preset}).model.acp.cross_view
    model = _model()
    assert model.acp_frames is None and model.acp_aggregate is None
    assert not any("acp" in name for name in model.state_dict())
    assert set(model.pools) == {"cls", "proj", "tmd"}


@pytest.mark.parametrize("switch", SWITCHES)
def test_each_switch_changes_the_model_output(switch: str) -> None:
    base, switched = _model(), _model(**{f"model.acp.{switch}": True})
    if switch == "scale_norm":  # starts at the identity: a trained (non-identity) affine must act
        with torch.no_grad():
            switched.acp_frames.scale_norm.scale.mul_(1.5)
    if switch == "memory":  # an empty bank reads nothing: fill it with one training batch first
        with torch.no_grad():
            switched.train()(CLIPS, CAMERAS)
        assert switched.acp_frames.memory.size.sum() == B
    base.eval()
    switched.eval()
    with torch.no_grad():
        expected, actual = base.test_features(CLIPS, CAMERAS), switched.test_features(CLIPS, CAMERAS)
    assert actual.shape == expected.shape == (B, 3 * D)
    assert not torch.allclose(actual, expected), f"model.acp.{switch} did not change the output"


def test_cross_view_replaces_the_cls_and_proj_pools() -> None:
    model = _model(**{"model.acp.cross_view": True}).eval()
    assert set(model.pools) == {"tmd"}
    with torch.no_grad():
        out = model(CLIPS, CAMERAS)
    torch.testing.assert_close(out["feat_proj"], model.encoder.project(out["feat_cls"]))


def test_all_switches_forward_backward_and_every_acp_parameter_learns() -> None:
    model = _model(**ALL_ON).train()
    with torch.no_grad():
        model(CLIPS, CAMERAS)  # fills the banks, so the memory read (and its attention) is in the graph
    out = model(CLIPS, CAMERAS)
    assert out["feat_cls"].shape == out["feat_tmd"].shape == (B, D)
    assert out["logits_proj"].shape == (B, CLASSES) and out["frame_logits"].shape == (B * T, CLASSES)
    config = _config(**ALL_ON, **{"loss.center_weight": 0.1, "loss.contrastive_weight": 1.0})
    task = ReIDTask(config.loss, num_classes=CLASSES, parts=model.parts, seq_len=T, dims=model.dims)
    terms = task(out, LABELS)
    assert {"center", "contrastive"} <= set(terms) and torch.isfinite(terms["loss"])
    terms["loss"].backward()
    acp = {n: p for n, p in model.named_parameters() if n.startswith("acp_")}
    assert acp
    for name, parameter in acp.items():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, f"{name} gets no gradient"
    model.eval()
    assert model.test_features(CLIPS, CAMERAS).shape == (B, 3 * D)


def test_memory_banks_are_written_in_training_only_and_saved_in_the_state_dict() -> None:
    model = _model(**{"model.acp.memory": True})
    bank = model.acp_frames.memory
    model.eval()
    with torch.no_grad():
        model(CLIPS, CAMERAS)
        model.test_features(CLIPS, CAMERAS)
    assert bank.size.sum() == 0
    model.train()
    with torch.no_grad():
        model(CLIPS, CAMERAS)
    assert bank.size.tolist() == [2, 1, 1]  # aerial, cctv, wearable
    state = model.state_dict()
    for buffer in ("bank", "size", "cursor"):
        assert torch.equal(state[f"acp_frames.memory.{buffer}"], getattr(bank, buffer))
    restored = _model(**{"model.acp.memory": True})
    restored.load_state_dict(state)
    model.eval()
    restored.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            restored.test_features(CLIPS, CAMERAS), model.test_features(CLIPS, CAMERAS)
        )


# ----------------------------------------------------------------------------------------------------- losses


def test_center_loss_is_the_mean_squared_distance_to_the_own_center() -> None:
    # reid-strong-baseline layers/center_loss.py L24-27 (centers = Parameter(randn(classes, dim))) and
    # L37-53 (loss = mean over the batch of ||x_i - c_{y_i}||^2, the per-sample squared distance to its own
    # class center); TF-CLIP builds the same CenterLoss (loss/make_loss.py L16) but never adds it.
    torch.manual_seed(0)
    center = CenterLoss(3, 8)
    features, labels = _randn(4, 8, seed=3), torch.tensor([0, 2, 2, 1])
    centers = center.centers.detach()
    expected = sum(float(((features[i] - centers[labels[i]]) ** 2).sum()) for i in range(4)) / 4
    loss = center(features, labels)
    assert math.isfinite(loss.item()) and loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert center.centers.grad is not None
    assert center.centers.grad[[0, 1, 2]].abs().sum(dim=1).gt(0).all()
    torch.testing.assert_close(center(center.centers[labels].detach(), labels), torch.tensor(0.0))


def test_center_centers_are_optimised_and_checkpointed_with_the_task() -> None:
    model = _model()
    config = _config(**{"loss.center_weight": 0.5})
    task = ReIDTask(config.loss, num_classes=CLASSES, parts=model.parts, seq_len=T, dims=model.dims)
    assert {n for n, _ in task.named_parameters()} == {f"centers.{p}.centers" for p in model.parts}
    assert task.centers["proj"].centers.shape == (CLASSES, model.dims["proj"])
    optimizer = build_optimizer(model, config.optim, task=task)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["task.centers.cls.centers"]["weight_decay"] == 0.0
    assert groups["task.centers.cls.centers"]["lr"] == config.optim.lr
    before = task.centers["cls"].centers.detach().clone()
    terms = task(model(CLIPS, CAMERAS), LABELS)
    optimizer.zero_grad()
    terms["loss"].backward()
    optimizer.step()
    assert not torch.equal(task.centers["cls"].centers, before)
    assert "centers.cls.centers" in task.state_dict()
    with pytest.raises(ValueError, match="center_weight > 0 needs"):
        ReIDTask(config.loss, num_classes=CLASSES, parts=model.parts, seq_len=T)


def _supcon_by_definition(features: torch.Tensor, labels: torch.Tensor, tau: float) -> float:
    z = torch.nn.functional.normalize(features, dim=1)
    losses = []
    for i in range(len(labels)):
        others = [a for a in range(len(labels)) if a != i]
        positives = [p for p in others if labels[p] == labels[i]]
        if not positives:
            continue
        denominator = sum(math.exp(float(z[i] @ z[a]) / tau) for a in others)
        losses.append(-sum(math.log(math.exp(float(z[i] @ z[p]) / tau) / denominator) for p in positives))
        losses[-1] /= len(positives)
    return sum(losses) / len(losses)


def test_supervised_contrastive_follows_the_definition() -> None:
    # HobbitLong/SupContrast losses.py: L69-71 logits z_i . z_a / tau, L79-85 the anchor itself masked out of
    # numerator and denominator, L88-89 log-softmax over the others, L92 mean over the positives, L14 tau
    # 0.07; features L2-normalised first (its model head normalises). An anchor without a positive (there 0/0)
    # is skipped here.
    features, labels = _randn(6, 8), torch.tensor([0, 0, 1, 1, 1, 2])
    for tau in (0.07, 0.5):
        loss = supervised_contrastive(features, labels, tau)
        assert math.isfinite(float(loss))
        assert float(loss) == pytest.approx(_supcon_by_definition(features, labels, tau), rel=1e-4)
    assert float(supervised_contrastive(features, torch.arange(6), 0.1)) == 0.0  # no positives at all
    assert float(supervised_contrastive(3 * features, labels, 0.1)) == pytest.approx(
        float(supervised_contrastive(features, labels, 0.1)), rel=1e-5
    )  # scale-free
    leaf = features.clone().requires_grad_(True)
    supervised_contrastive(leaf, labels, 0.07).backward()
    assert torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0


def test_zero_weights_leave_the_loss_unchanged() -> None:
    model = _model()
    out = model(CLIPS, CAMERAS)
    default = ReIDTask(LossConfig(), num_classes=CLASSES, parts=model.parts, seq_len=T)(out, LABELS)
    zero = LossConfig(center_weight=0.0, contrastive_weight=0.0, contrastive_temperature=0.5)
    task = ReIDTask(zero, num_classes=CLASSES, parts=model.parts, seq_len=T, dims=model.dims)
    assert not list(task.parameters())
    terms = task(out, LABELS)
    assert terms.keys() == default.keys()
    assert all(torch.equal(terms[k], default[k]) for k in terms)
    on = ReIDTask(LossConfig(contrastive_weight=1.0), num_classes=CLASSES, parts=model.parts, seq_len=T)(
        out, LABELS
    )
    assert on["loss"].item() == pytest.approx((default["loss"] + on["contrastive"]).item(), rel=1e-6)


# --------------------------------------------------------------------------------------------- preset and fit


def test_preset_has_the_reports_recipe() -> None:
    # Report A.3 (seed report L289-295): the five modules; "8-frame clips, resized to 256x128"; "AdamW,
    # initial LR 1e-4 (stage 1), reduced to 5e-6 (stage 2)"; "dropout 0.3, weight decay 0.05"; "random
    # flip (80%), erase (60%)"; "150 epochs (stage 1), 100 epochs (stage 2)"; "12 heads"; ImageNet norm.
    config = resolve_config({"preset": "acp-vpreid"})
    acp = config.model.acp
    assert all(getattr(acp, switch) for switch in SWITCHES) and acp.dropout == 0.3
    assert (acp.heads or config.model.tmd_heads) == 12 and config.model.backbone == "ViT-B-16"
    assert config.data.sampling.seq_len == 8
    transform = config.data.transform
    assert (transform.height, transform.width, transform.flip_p, transform.erase_p) == (256, 128, 0.8, 0.6)
    assert (transform.mean, transform.std) == (IMAGENET_MEAN, IMAGENET_STD)
    optim = config.optim
    assert (optim.name, optim.lr, optim.weight_decay, optim.epochs) == ("adamw", 1e-4, 0.05, 250)
    assert config.loss.center_weight > 0 and config.loss.contrastive_weight > 0
    assert config.loss.triplet_weight > 0 and config.loss.id_weight > 0
    stage_lr = {epoch: optim.lr * lr_factor(epoch, optim) for epoch in (20, 149, 150, 249)}
    assert stage_lr[20] == pytest.approx(1e-4) and stage_lr[149] == pytest.approx(1e-4)
    assert stage_lr[150] == pytest.approx(5e-6) and stage_lr[249] == pytest.approx(5e-6)
    assert config.data.batch.batch_size == 64  # stage 1's batch; stage 2's 32 is data.batch.p: 8


def _acp_tiny(root: Path) -> TrainerConfig:
    """The acp-vpreid preset's switches and losses on the tiny backbone and the small synthetic dataset."""
    preset = PRESETS["acp-vpreid"]
    overrides = flatten_dotted({"model": preset["model"], "loss": preset["loss"]})
    overrides["optim.name"] = "adamw"
    overrides["model.acp.memory_slots"] = 4  # the tiny run writes fewer clips than 64
    return resolve_config(
        {
            "preset": "tiny-cpu",
            "data": {"root": str(root), "batch": {"p": 4, "k": 2}, "split": {"fraction": 0.3}},
            "runtime": {"eval_batch_size": 64},
        },
        overrides=overrides,
    )


def test_fit_with_the_preset_switches_saves_banks_and_centers_and_resumes_exactly(
    small_root: Path, tmp_path: Path
) -> None:
    config = _acp_tiny(small_root)
    assert config.model.acp.frame_modules and config.model.acp.cross_view
    (result,) = fit(config, max_epochs=1, checkpoint_dir=tmp_path / "split")
    for key in ("train_loss", "train_center", "train_contrastive", "val_map", "val_r1"):
        assert math.isfinite(result[key]), key
    payload = load_checkpoint(tmp_path / "split")
    assert payload["model"]["acp_frames.memory.size"].sum() > 0  # the banks were written and saved
    assert {f"centers.{p}.centers" for p in ("cls", "proj", "tmd")} <= set(payload["task"])
    names = [g["name"] for g in payload["optimizer"]["param_groups"]]
    assert sum(name.startswith("task.centers.") for name in names) == 3
    # banks, centers and their optimiser state resume exactly: 1 + 1 epochs == 2 epochs
    resumed = fit(config, max_epochs=2, checkpoint_dir=tmp_path / "split", resume_from=tmp_path / "split")
    straight = fit(config, max_epochs=2, checkpoint_dir=tmp_path / "straight")
    for key in ("train_loss", "train_center", "val_map"):
        assert resumed[0][key] == straight[-1][key], key
    a, b = (load_checkpoint(tmp_path / run) for run in ("straight", "split"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["task"][k], b["task"][k]) for k in a["task"])
