"""``agvp-hpo evaluate``: the AG-VPReID test protocol on a dataset folder.

Evaluates a trained checkpoint (or, with ``--random-init``, an untrained model of a preset as a baseline):
features, distances, optional re-ranking / masking / flip TTA, metrics per case, overall and per altitude
when identities are known, and always the submission file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from hpo.cli._common import console, fail, progress_bar, user_errors
from trainers.data.layout import PROTOCOL_CASES
from trainers.data.sampling import SamplingMode
from trainers.evaluation.masking import DEFAULT_MASK_ATTRIBUTES

if TYPE_CHECKING:
    from trainers.evaluation.protocol import CaseMetrics, EvaluationReport


def _parse_masks(masks: list[str], default_penalty: float) -> dict[str, float]:
    """``--mask gender`` or ``--mask gender=0.2``; ``--mask default`` = the X-TFCLIP four attributes;
    ``--mask none`` = no masking."""
    penalties: dict[str, float] = {}
    for item in masks:
        name, _, value = item.partition("=")
        if name == "none":
            continue
        names = list(DEFAULT_MASK_ATTRIBUTES) if name == "default" else [name]
        for attribute in names:
            try:
                penalties[attribute] = float(value) if value else default_penalty
            except ValueError:
                raise ValueError(f"--mask {item!r}: penalty {value!r} is not a number") from None
    return penalties


def _fmt(metrics: CaseMetrics | None, key: str) -> str:
    return "-" if metrics is None else f"{100 * getattr(metrics, key):.2f}"


def _render(report: EvaluationReport) -> None:
    table = Table(title="AG-VPReID evaluation (percent)")
    for column in ("case", "subset", "queries scored", "R1", "R5", "R10", "mAP"):
        table.add_column(column, justify="left" if column in ("case", "subset") else "right")
    for name, case in report.cases.items():
        rows = [(name.upper(), "all", case.metrics), *(("", a, m) for a, m in case.per_altitude.items())]
        for label, subset, metrics in rows:
            scored = "-" if metrics is None else f"{metrics.valid_queries}/{metrics.queries}"
            table.add_row(label, subset, scored, *(_fmt(metrics, k) for k in ("r1", "r5", "r10", "mAP")))
    overall = report.overall
    if overall is not None:
        table.add_row(
            "OVERALL",
            "mean",
            "",
            *(f"{100 * overall[k]:.2f}" for k in ("r1", "r5", "r10", "mAP")),
            style="bold",
        )
    console.print(table)
    if overall is None:
        console.print("[yellow]test identities are masked: no metrics, only the submission file[/]")


def evaluate(
    checkpoint: Annotated[
        Path | None, typer.Argument(help="Checkpoint file or run folder (from `agvp-hpo train`).")
    ] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Dataset root in the AG-VPReID layout.")] = None,
    random_init: Annotated[
        bool, typer.Option("--random-init", help="Evaluate an untrained model of --preset instead.")
    ] = False,
    preset: Annotated[str, typer.Option("--preset", help="Preset for --random-init.")] = "tiny-cpu",
    case: Annotated[str, typer.Option("--case", help="a2g | g2a | both")] = "both",
    sampling: Annotated[
        str | None, typer.Option("--sampling", help="chunk-first | dense (default: the model's test mode)")
    ] = None,
    flip: Annotated[
        bool | None,
        typer.Option(
            "--flip/--no-flip",
            help="Average features with the horizontal flip (default: the model's runtime.eval_flip).",
        ),
    ] = None,
    rerank: Annotated[bool, typer.Option("--rerank", help="k-reciprocal re-ranking.")] = False,
    k1: Annotated[int, typer.Option("--k1")] = 20,
    k2: Annotated[int, typer.Option("--k2")] = 6,
    lambda_value: Annotated[float, typer.Option("--lambda")] = 0.3,
    mask: Annotated[
        list[str] | None,
        typer.Option(
            "--mask",
            help="Soft-biometric masking: ATTR or ATTR=PENALTY, repeatable; 'default' = 4; 'none' = off "
            "(default: the model's runtime.eval_mask).",
        ),
    ] = None,
    mask_penalty: Annotated[float, typer.Option("--mask-penalty", help="Penalty when none is given.")] = 0.2,
    top_k: Annotated[int, typer.Option("--top-k", help="Gallery tracklets per submission row.")] = 10,
    submission: Annotated[
        Path | None, typer.Option("--submission", help="Write the submission CSV here.")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json-out", help="Write the report as JSON here.")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 16,
    workers: Annotated[int, typer.Option("--workers", help="Data loader worker processes.")] = 0,
    test_ids: Annotated[str, typer.Option("--test-ids", help="auto | masked | true")] = "auto",
) -> None:
    """Run the test protocol (case 1 A2G, case 2 G2A): metrics when identities are known, and a submission."""
    # Heavy imports (torch, open_clip) here, so `agvp-hpo --help` and the data commands start fast.
    from trainers.data.index import read_dataset
    from trainers.data.pipeline import eval_dataset
    from trainers.data.split import protocol_views
    from trainers.engine import build_model, load_checkpoint, model_from_checkpoint, resolve_device
    from trainers.evaluation.extract import extract_features
    from trainers.evaluation.protocol import ProtocolOptions, evaluate_views
    from trainers.evaluation.submission import SubmissionCase, write_submission
    from trainers.tfclip.config import resolve_config

    if (checkpoint is None) == (not random_init):
        raise fail("give a CHECKPOINT to evaluate, or --random-init for an untrained baseline (not both)")
    if data is None:
        raise fail("--data is required: the dataset root to evaluate on")
    with user_errors():
        if case not in ("a2g", "g2a", "both"):
            raise ValueError(f"--case is {case!r}, but must be one of a2g, g2a, both")
        if top_k < 1:
            raise ValueError(f"--top-k is {top_k}, but must be >= 1")
        penalties = _parse_masks(mask, mask_penalty) if mask is not None else None
        if checkpoint is not None:
            model, config = model_from_checkpoint(load_checkpoint(checkpoint))
        else:
            config = resolve_config({"preset": preset}, overrides={"loss.v2m_weight": 0})
            model = build_model(config, num_classes=1, memory=None)
        penalties = dict(config.runtime.eval_mask) if penalties is None else penalties
        flip = config.runtime.eval_flip if flip is None else flip
        options = ProtocolOptions(
            rerank=rerank, k1=k1, k2=k2, lambda_value=lambda_value, mask_penalties=penalties
        )
        mode = SamplingMode(sampling) if sampling is not None else config.data.sampling.test_mode
        if mode is SamplingMode.CHUNK_RANDOM:
            raise ValueError("--sampling chunk-random is for training; use chunk-first or dense")
        test_splits = list(dict.fromkeys(split for pair in PROTOCOL_CASES.values() for split in pair))
        index = read_dataset(data, splits=test_splits, test_ids=test_ids)  # type: ignore[arg-type]
        views = protocol_views(index)
        if case != "both":
            views = {case: views[case]} if case in views else {}
        if not views:
            raise ValueError(f"{data} has no test splits for case {case}")
        device = resolve_device(config.runtime.device)
        model = model.to(device).eval()
        tracklets = {t.key: t for view in views.values() for t in (*view.query, *view.gallery)}
        dataset = eval_dataset(
            index, list(tracklets.values()), config.data, mode=mode, cache_dir=config.runtime.cache_dir
        )
        with progress_bar(eta=True) as progress:
            task = progress.add_task("extracting features", total=len(dataset))
            features = extract_features(
                model.test_features,
                dataset,
                batch_size=batch_size,
                flip=flip,
                num_workers=workers,
                device=device,
                on_progress=lambda n: progress.advance(task, n),
            )
        report, distances = evaluate_views(index, views, features, options)
        if submission is not None:
            cases = [
                SubmissionCase(
                    name=name,
                    query_names=tuple(t.name for t in views[name].query),
                    gallery_names=tuple(t.name for t in views[name].gallery),
                    distmat=distances[name],
                )
                for name in PROTOCOL_CASES
                if name in views
            ]
            write_submission(submission, cases, top_k=top_k)
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            payload = {
                "model": {
                    "checkpoint": str(checkpoint) if checkpoint else None,
                    "preset": config.preset,
                    "backbone": config.model.backbone,
                    "random_init": random_init,
                },
                "options": {"sampling": mode.value, "flip": flip, "rerank": rerank, "mask": penalties},
                "dataset": {
                    "root": str(data),
                    "fingerprint": index.fingerprint(),
                    "test_ids": index.test_ids,
                },
                **report.to_dict(),
            }
            json_out.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    _render(report)
    if submission is not None:
        console.print(f"submission: {submission} (top {top_k})")
