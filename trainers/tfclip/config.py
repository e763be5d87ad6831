"""The one typed, nested configuration of the TF-CLIP trainer, and its presets.

Every key does something: a test checks that each one is validated or changes the computation (the reference
code's dead settings - prompt lr, test size, padding, "stage 1" options - have no counterpart here). Unknown
keys are errors that name the key and suggest the closest valid one.

Presets are data, not code paths: ``tfclip`` (the published baseline), ``x-tfclip`` (the challenge winner's
switches), ``tfclip-ag-vpreid`` (the challenge's EVA-CLIP-L/14 entry) and ``tiny-cpu`` (a few-layer ViT on
small images for CPU runs; same code path). ``acp-vpreid`` turns on ACP-VPReID's view-adaptive modules
(``model.acp``) and its center and contrastive losses.

The learning-rate schedule spans ``optim.epochs`` - the full planned budget - whatever ``max_epochs`` a run
is given. A trial promoted from 3 to 9 epochs therefore continues exactly the schedule it started, which is
what makes multi-fidelity resume equivalent to one uninterrupted run.
"""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from trainers.data.attributes import UNKNOWN_CODE
from trainers.data.config import DataConfig, StrictModel, TransformConfig
from trainers.protocol import TrainerConfigError

FeaturePart = Literal["cls", "proj", "tmd"]


class ConfigError(TrainerConfigError):
    """An invalid trainer configuration; the message names the key and the rule. ``key`` is the dotted key
    at fault when one is (None for a rule between keys, whose message names them)."""


class ACPConfig(StrictModel):
    """ACP-VPReID's view-adaptive modules (challenge report, Appendix A.3), each a switch on the TF-CLIP model
    (:mod:`trainers.tfclip.acp`; built from the report's description - there is no public code). The view
    (platform) of a clip comes from its camera: C0/C1 CCTV, C2/C3 wearable, C4/C5 aerial. All off: TF-CLIP.
    """

    #: (i) View-specific feature encoding: a residual bottleneck MLP per platform on the encoder's tokens.
    view_encoding: bool = False
    #: (ii) Temporal memory diffusion: a memory bank per platform (FIFO of past clips' CLS features, a
    #: checkpointed buffer written in training only) read by each frame's CLS token through gated attention.
    memory: bool = False
    #: Clips each platform's memory bank holds.
    memory_slots: int = Field(64, ge=1)
    #: (iii) Motion-aware gating: a channel gate in (0, 2) from each token's difference to the previous frame.
    motion_gate: bool = False
    #: (iv) Scale-adaptive normalisation: a per-platform scale and shift of the tokens leaving ln_post (a
    #: layer norm conditioned on camera type; starts as the identity).
    scale_norm: bool = False
    #: (v) Learnable view embeddings and a cross-view transformer aggregating the frames' CLS features (in
    #: place of the temporal pool of the cls part; the proj video feature is CLIP's projection of it).
    cross_view: bool = False
    cross_view_layers: int = Field(1, ge=1)
    #: Attention heads of the memory read and the cross-view transformer; None = model.tmd_heads (the
    #: report: 12 heads).
    heads: int | None = Field(None, ge=1)
    #: Dropout inside every ACP module (the report's "dropout 0.3" names no place; TF-CLIP's own SSP dropout
    #: is model.ssp_dropout).
    dropout: float = Field(0.1, ge=0.0, lt=1.0)

    @property
    def frame_modules(self) -> bool:
        """Any of the modules acting on the frames' tokens is on."""
        return self.view_encoding or self.memory or self.motion_gate or self.scale_norm


class ModelConfig(StrictModel):
    #: open_clip vision config name (e.g. ViT-B-16, EVA02-L-14) or a custom one (tiny-cpu, tiny-eva-cpu).
    backbone: str = "ViT-B-16"
    #: Local pre-trained weights: OpenAI TorchScript file or open_clip checkpoint. None = random init.
    weights: Path | None = None
    #: Patch stride (overlapping patches when < patch size). None = patch size.
    stride: int | None = Field(None, ge=1)
    pos_interpolation: Literal["bilinear", "bicubic"] = "bilinear"
    #: QuickGELU (x sigmoid(1.702 x)) in the backbone, TMD and SSP blocks, as OpenAI CLIP and TF-CLIP; false =
    #: exact GELU (for open_clip checkpoints trained with it). timm-trunk backbones (EVA) keep their own
    #: activations whatever this says (as in open_clip): there it switches TMD and SSP only.
    quick_gelu: bool = True
    #: Side-information embedding: a learnable vector per camera added to the CLS token, times this
    #: coefficient (0 turns it off).
    sie_coef: float = Field(1.0, ge=0.0)
    #: Learnable per-frame-position embedding added with the camera embedding (X-TFCLIP).
    frame_position: bool = False
    #: Temporal Memory Diffusion block (cross-frame messages over the token maps) and its frame-level loss.
    tmd: bool = True
    #: TF-CLIP hard-codes 12 heads (768 / 64).
    tmd_heads: int = Field(12, ge=1)
    # The CLIP identity memory, the SSP layers and the video-to-memory logits exist iff loss.v2m_weight > 0.
    ssp_layers: int = Field(2, ge=1)
    #: TF-CLIP: embed_dim // 64 = 8 for ViT-B/16.
    ssp_heads: int = Field(8, ge=1)
    ssp_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    #: memory' = memory + SSP update (TF-CLIP), or alpha memory + (1 - alpha) SSP with alpha = sigmoid(a),
    #: a learned and initialised to 0.5 (X-TFCLIP).
    memory_update: Literal["additive", "alpha"] = "additive"
    #: Mean over frames (and over a frame's TMD tokens, and the SSP's video tokens over frames), or
    #: X-TFCLIP's attention pooling at each of those places.
    temporal_pool: Literal["mean", "attention"] = "mean"
    neck: Literal["bn", "in"] = "bn"
    #: Which features are concatenated for retrieval (all three = the 2048-d TF-CLIP test feature).
    test_features: tuple[FeaturePart, ...] = ("cls", "proj", "tmd")
    #: Retrieval features taken before their necks (TF-CLIP's configs/vit_clipreid.yml: NECK_FEAT 'before';
    #: its config/defaults.py says 'after', which is reachable here).
    neck_feat: Literal["before", "after"] = "before"
    #: ACP-VPReID's switches (all off by default).
    acp: ACPConfig = ACPConfig()

    @model_validator(mode="after")
    def _parts(self) -> ModelConfig:
        if not self.test_features or len(set(self.test_features)) != len(self.test_features):
            raise ValueError(f"test_features is {self.test_features}, but must list distinct parts")
        if "tmd" in self.test_features and not self.tmd:
            raise ValueError("test_features uses 'tmd' but model.tmd is false")
        return self


class LossConfig(StrictModel):
    #: Weight of the (three) identity cross-entropies.
    id_weight: float = Field(0.25, ge=0.0)
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    #: Online label smoothing (Zhang et al., TIP 2021) instead of uniform smoothing.
    online_label_smoothing: bool = False
    #: Share of the hard-label term in online label smoothing.
    ols_alpha: float = Field(0.5, ge=0.0, le=1.0)
    triplet_weight: float = Field(1.0, ge=0.0)
    triplet_margin: float = Field(0.3, gt=0.0)
    #: Video-to-memory cross-entropy (label-smoothed like the ID terms); 0 removes the identity memory and
    #: the SSP layers altogether.
    v2m_weight: float = Field(1.0, ge=0.0)
    #: Frame-level identity cross-entropy on the TMD per-frame logits, divided by T (TF-CLIP's stage-2 loop:
    #: loss + loss_frame / T); needs model.tmd.
    frame_weight: float = Field(1.0, ge=0.0)
    #: Center loss (Wen et al., ECCV 2016; ACP-VPReID): mean squared distance of each pre-neck video feature
    #: to its identity's learnable center, summed over the parts; the centers are optimised with the model.
    center_weight: float = Field(0.0, ge=0.0)
    #: Supervised contrastive loss (Khosla et al., NeurIPS 2020; ACP-VPReID) over the batch's L2-normalised
    #: projected video features: positives are the other clips of the same identity.
    contrastive_weight: float = Field(0.0, ge=0.0)
    contrastive_temperature: float = Field(0.07, gt=0.0)


class OptimConfig(StrictModel):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(5e-6, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    weight_decay_bias: float = Field(1e-4, ge=0.0)
    #: lr x this (and weight_decay_bias) for every parameter whose name contains "bias", attention
    #: in_proj_bias included (TF-CLIP solver/make_optimizer_prompt.py).
    bias_lr_factor: float = Field(2.0, gt=0.0)
    #: lr x this for the classifiers of ``classifier_lr_parts``.
    classifier_lr_factor: float = Field(10.0, gt=0.0)
    #: TF-CLIP's LARGE_FC_LR matches only the TMD classifier ("classifier_proj_temp").
    classifier_lr_parts: tuple[FeaturePart, ...] = ("tmd",)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    #: The planned budget: length of the cosine schedule and `agvp-hpo train`'s default run length,
    #: independent of a run's max_epochs.
    epochs: int = Field(80, ge=1)
    warmup_epochs: int = Field(10, ge=0)
    warmup_factor: float = Field(0.1, gt=0.0, le=1.0)
    schedule: Literal["multistep", "cosine"] = "multistep"
    milestones: tuple[int, ...] = (30, 50, 70)
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    grad_centralization: bool = False
    #: Max gradient norm; None = no clipping.
    grad_clip: float | None = Field(None, gt=0.0)
    #: auto = bf16 autocast on CUDA, fp32 on CPU.
    precision: Literal["auto", "fp32", "bf16"] = "auto"

    @model_validator(mode="after")
    def _schedule(self) -> OptimConfig:
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs is {self.warmup_epochs}, but must be < epochs ({self.epochs})")
        if list(self.milestones) != sorted(set(self.milestones)) or any(m < 1 for m in self.milestones):
            raise ValueError(f"milestones is {self.milestones}, but must be increasing positive epochs")
        return self


class TrainDataConfig(DataConfig):
    #: Dataset root in the AG-VPReID layout.
    root: Path = Path(".demo/data")


class RuntimeConfig(StrictModel):
    seed: int = 0
    #: "auto" = cuda when available, else cpu.
    device: str = "auto"
    #: torch intra-op threads; None = torch's default.
    threads: int | None = Field(None, ge=1)
    eval_batch_size: int = Field(16, ge=1)
    #: Average features with the horizontally flipped clip at validation (and by default in `evaluate`).
    eval_flip: bool = False
    #: Soft-biometric masking at validation (and by default in `evaluate`): attribute -> distance penalty when
    #: query and gallery codes are both known and differ. X-TFCLIP's code adds 100 (a hard filter); its
    #: challenge report uses 0.2 / 0.1, the x-tfclip preset's values.
    eval_mask: dict[str, float] = Field(default_factory=dict)
    #: Where the CLIP identity memory and the frame cache (``data.frame_cache``) live (content-keyed);
    #: None = $AGVP_CACHE or ~/.cache/agvp-hpo.
    cache_dir: Path | None = None

    @model_validator(mode="after")
    def _mask(self) -> RuntimeConfig:
        for attribute, penalty in self.eval_mask.items():
            if attribute not in UNKNOWN_CODE:
                close = difflib.get_close_matches(attribute, UNKNOWN_CODE, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ValueError(f"eval_mask attribute {attribute!r} is not an AG-VPReID attribute{hint}")
            if not math.isfinite(penalty) or penalty < 0:
                raise ValueError(
                    f"eval_mask penalty of {attribute} is {penalty}, but must be finite and >= 0"
                )
        return self


class TrainerConfig(StrictModel):
    #: The preset the values were resolved from (informative once resolved).
    preset: str | None = None
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    data: TrainDataConfig = TrainDataConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    @model_validator(mode="after")
    def _preset(self) -> TrainerConfig:
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"preset is {self.preset!r}, but must be one of {', '.join(PRESETS)}")
        return self

    @model_validator(mode="after")
    def _parts_exist(self) -> TrainerConfig:
        if not self.model.tmd:
            if self.loss.frame_weight > 0:
                raise ValueError(
                    "loss.frame_weight is > 0 but model.tmd is false (the frame term is on TMD's per-frame "
                    "logits): set loss.frame_weight: 0"
                )
            if "tmd" in self.optim.classifier_lr_parts:
                raise ValueError("optim.classifier_lr_parts lists 'tmd' but model.tmd is false")
        return self

    @property
    def uses_memory(self) -> bool:
        """The identity memory (+ SSP) is built only when its loss is on."""
        return self.loss.v2m_weight > 0


#: Presets are data. Every preset normalises with ImageNet's mean/std (the defaults of ``data.transform``):
#: TF-CLIP's data loader hard-codes them and ignores the 0.5 PIXEL_MEAN/PIXEL_STD of its yml.
PRESETS: dict[str, dict[str, Any]] = {
    "tfclip": {
        "data": {
            "transform": {"height": 256, "width": 128},
            "sampling": {"seq_len": 8},
            "batch": {"p": 4, "k": 4},
        },
    },
    "x-tfclip": {
        "model": {
            "pos_interpolation": "bicubic",
            "frame_position": True,
            "memory_update": "alpha",
            "temporal_pool": "attention",
            "neck": "in",
        },
        "loss": {"online_label_smoothing": True},
        # The challenge report trains 90 epochs (the code's yml says MAX_EPOCHS 80: optim.epochs).
        "optim": {"grad_centralization": True, "epochs": 90},
        "data": {
            "transform": {"height": 288, "width": 144},
            "sampling": {"seq_len": 8},
            # The report's PK is 4 x 6; the code's yml (IMS_PER_BATCH 18, NUM_INSTANCE 6) is 3 x 6
            # (data.batch.p: 3).
            "batch": {"p": 4, "k": 6},
        },
        "runtime": {
            "eval_flip": True,
            # The report's penalties; the code's hard filter is 100 for each of the four attributes.
            "eval_mask": {"gender": 0.2, "age": 0.2, "ethnicity": 0.2, "body_volume": 0.1},
        },
    },
    # TFCLIP-AG-VPReID, the challenge report's Appendix A.2: TF-CLIP with an EVA-CLIP-L/14 image encoder, "all
    # other modules unchanged". Values are quoted from A.2 unless marked. (A.2 also trains on G2AVReID's train
    # and test sets: a data source, not set here.)
    "tfclip-ag-vpreid": {
        # "EVA-CLIP-L-14 encoder" (open_clip EVA02-L-14: width 1024, joint embedding 768). A.2 does not say
        # how TMD/SSP follow the wider tower; TF-CLIP's 12 TMD heads do not divide 1024, so both keep
        # TF-CLIP's 64-d heads (ours: 1024 / 64 and 768 / 64).
        "model": {"backbone": "EVA02-L-14", "tmd_heads": 16, "ssp_heads": 12},
        # "L_total = L_V2M + L_tri + L_ce", "each ... with a weight of 1.0", margin "0.3", smoothing "0.1"
        # (TF-CLIP's code weighs the ID terms 0.25: loss.id_weight). TF-CLIP's TMD frame term is one of the
        # unchanged modules and keeps its weight (loss.frame_weight: 0 drops it).
        "loss": {
            "id_weight": 1.0,
            "triplet_weight": 1.0,
            "v2m_weight": 1.0,
            "triplet_margin": 0.3,
            "label_smoothing": 0.1,
        },
        # "80 epochs"; "warm-up ... over the first 10 epochs ... from 5e-7 to 5e-6" = lr 5e-6 x warmup_factor
        # 0.1 at epoch 0 rising linearly; "divided by 10 at the 30th and 50th epochs".
        "optim": {
            "lr": 5e-6,
            "epochs": 80,
            "warmup_epochs": 10,
            "warmup_factor": 0.1,
            "milestones": (30, 50),
            "gamma": 0.1,
        },
        # "resized to 224x224"; "batch size ... 8, containing 8 frames per track, sampled from 2 identities,
        # each with 4 tracks".
        "data": {
            "transform": {"height": 224, "width": 224},
            "sampling": {"seq_len": 8},
            "batch": {"p": 2, "k": 4},
        },
    },
    # ACP-VPReID, the challenge report's Appendix A.3: TF-CLIP (CLIP ViT-B/16) with view-adaptive modules,
    # built from the report's description (no public code). Values are quoted from A.3 unless marked.
    "acp-vpreid": {
        # (i) view-specific encoding, (ii) temporal memory diffusion, (iii) motion-aware gating, (iv)
        # scale-adaptive modules, (v) view embeddings + cross-view transformer; "12 heads" (=
        # model.tmd_heads); "dropout 0.3" (no place given: every ACP module's dropout).
        "model": {
            "acp": {
                "view_encoding": True,
                "memory": True,
                "motion_gate": True,
                "scale_norm": True,
                "cross_view": True,
                "dropout": 0.3,
            },
        },
        # "identity, triplet, center, and contrastive loss": TF-CLIP's ID/triplet/V2M/frame terms plus the two
        # new ones. A.3 gives no weights: 0.0005 is the usual center-loss weight (reid-strong-baseline's
        # CENTER_LOSS_WEIGHT); contrastive 1.0.
        "loss": {"center_weight": 5e-4, "contrastive_weight": 1.0},
        # "AdamW, initial LR 1e-4 (stage 1), reduced to 5e-6 (stage 2)", "150 epochs (stage 1), 100 epochs
        # (stage 2)": one milestone at 150 with gamma 5e-6 / 1e-4 = 0.05 over 250 epochs; "weight decay 0.05".
        # Warm-up is not mentioned: TF-CLIP's 10 epochs are kept.
        "optim": {
            "name": "adamw",
            "lr": 1e-4,
            "weight_decay": 0.05,
            "epochs": 250,
            "milestones": (150,),
            "gamma": 0.05,
        },
        # "8-frame clips, resized to 256x128", "random flip (80%), erase (60%)". "batch sizes 64/32"
        # (stages 1/2) cannot change mid-run: 64 = 16 identities x 4 tracklets (data.batch.p: 8 for stage
        # 2's 32).
        "data": {
            "transform": {"height": 256, "width": 128, "flip_p": 0.8, "erase_p": 0.6},
            "sampling": {"seq_len": 8},
            "batch": {"p": 16, "k": 4},
        },
    },
    "tiny-cpu": {
        "model": {"backbone": "tiny-cpu", "tmd_heads": 2, "ssp_heads": 2, "ssp_layers": 1},
        # from-scratch tiny ViT: a larger lr and a 40-epoch schedule (~1 min on 2 CPU cores at demo size)
        "optim": {"lr": 1e-3, "weight_decay": 5e-4, "epochs": 40, "warmup_epochs": 2, "milestones": (30,)},
        "data": {
            "transform": {"height": 64, "width": 32},
            "sampling": {"seq_len": 4},
            "batch": {"p": 8, "k": 2},
            "split": {"fraction": 0.2},
        },
        "runtime": {"eval_batch_size": 32},
    },
}


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    """``optim.lr`` -> target["optim"]["lr"] = value (creating sections as needed)."""
    *sections, leaf = dotted.split(".")
    node = target
    for section in sections:
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: {section} is not a section")
    node[leaf] = value


def _model_at(path: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = TrainerConfig
    for part in path:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None) if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _explain(error: ValidationError) -> ConfigError:
    first = error.errors()[0]
    location = tuple(first["loc"])
    where = ".".join(str(p) for p in location) or "config"
    if first["type"] == "extra_forbidden":
        parent = _model_at(location[:-1])
        valid = list(parent.model_fields) if parent else []
        close = difflib.get_close_matches(str(location[-1]), valid, n=1)
        hint = f" (did you mean {'.'.join([*map(str, location[:-1]), close[0]])}?)" if close else ""
        return ConfigError(f"unknown key {where}{hint}", key=where)
    message = first["msg"].removeprefix("Value error, ")
    return ConfigError(f"{where}: {message}" if location else message, key=where if location else None)


def _expand_size(
    raw: Mapping[str, Any], overrides: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``data.transform.size: 288x144`` (handy as one categorical HPO parameter) becomes height and width
    in the layer that sets it, so it overrides the preset's values instead of only filling unset ones."""
    raw, overrides = copy.deepcopy(dict(raw)), dict(overrides)
    transform = raw.get("data", {}).get("transform") if isinstance(raw.get("data"), Mapping) else None
    layers: list[tuple[dict[str, Any], str, str]] = []
    if isinstance(transform, dict) and "size" in transform:
        layers.append((transform, "height", "width"))
    if "data.transform.size" in overrides:
        overrides["size"] = overrides.pop("data.transform.size")
        layers.append((overrides, "data.transform.height", "data.transform.width"))
    for layer, height_key, width_key in layers:
        size = layer.pop("size")
        if height_key in layer or width_key in layer:
            raise ConfigError(
                "data.transform.size and data.transform.height/width are both set: give one or the other",
                key="data.transform.size",
            )
        try:
            layer[height_key], layer[width_key] = TransformConfig.parse_size(size)
        except ValueError as error:
            raise ConfigError(f"data.transform.size: {error}", key="data.transform.size") from None
    return raw, overrides


def resolve_config(
    raw: Mapping[str, Any] | None = None, *, overrides: Mapping[str, Any] | None = None
) -> TrainerConfig:
    """Preset (``raw["preset"]``, default ``tfclip``) <- ``raw`` <- dotted ``overrides`` -> validated config.

    Raises :class:`ConfigError` with a one-line message naming the key.
    """
    raw = dict(raw or {})
    preset = raw.get("preset") or "tfclip"
    if preset not in PRESETS:
        close = difflib.get_close_matches(str(preset), PRESETS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"preset {preset!r} is not one of {', '.join(PRESETS)}{hint}")
    raw, overrides = _expand_size(raw, overrides or {})
    merged = _deep_merge(PRESETS[preset], raw)
    merged["preset"] = preset
    for dotted, value in overrides.items():
        _set_dotted(merged, dotted, value)
    try:
        return TrainerConfig.model_validate(merged)
    except ValidationError as error:
        raise _explain(error) from None


def load_config(path: Path | str, *, overrides: Mapping[str, Any] | None = None) -> TrainerConfig:
    """Read a YAML trainer config (the resolved config a run writes is accepted as is)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{line}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    try:
        return resolve_config(raw, overrides=overrides)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def config_to_yaml(config: TrainerConfig) -> str:
    """The resolved config as YAML that :func:`load_config` reads back to the same config."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def trial_config(settings: Mapping[str, Any], params: Mapping[str, Any]) -> TrainerConfig:
    """Preset <- ``settings["overrides"]`` <- searched ``params`` <- data root and weights.

    ``settings["weights"]`` is one file, or one file per backbone (``{ViT-B-16: a.pt, EVA02-L-14: b.pt}``)
    for a study that searches ``model.backbone``: the trial's backbone picks its file."""
    overrides: dict[str, Any] = dict(settings.get("overrides") or {})
    overrides.update(params)
    if settings.get("data") is not None:
        overrides["data.root"] = str(settings["data"])
    preset = {"preset": settings.get("preset", "tfclip")}
    weights = settings.get("weights")
    if isinstance(weights, Mapping):
        backbone = resolve_config(preset, overrides=flatten_dotted(overrides)).model.backbone
        if backbone not in weights:
            raise ConfigError(
                f"model.weights: trainer.weights names files for {', '.join(map(str, weights))}, but not for "
                f"backbone {backbone!r}",
                key="model.backbone",
            )
        weights = weights[backbone]
    if weights is not None:
        overrides["model.weights"] = str(weights)
    return resolve_config(preset, overrides=flatten_dotted(overrides))


def flatten_dotted(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten nested override mappings ({optim: {lr: 1}}) into dotted keys ({optim.lr: 1})."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            for inner, leaf in flatten_dotted(value).items():
                flat[f"{key}.{inner}"] = leaf
        else:
            flat[key] = value
    return flat
