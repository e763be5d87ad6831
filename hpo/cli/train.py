"""``agvp-hpo train CONFIG.yaml``: one training run of the TF-CLIP trainer (what one HPO trial does)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from hpo.cli._common import console, fail, user_errors

METRICS_FILE = "metrics.jsonl"


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    """``--set optim.lr=1e-4`` (values parsed as YAML: numbers, booleans, lists)."""
    import yaml

    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r} must look like section.key=value")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def train(
    config_path: Annotated[
        Path, typer.Argument(metavar="CONFIG.yaml", help="Trainer config (a preset + overrides).")
    ],
    epochs: Annotated[
        int | None, typer.Option("--epochs", help="Stop after this many epochs (default: optim.epochs).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: runs/<config name>).")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Resume from a run folder or checkpoint file.")
    ] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Override data.root.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a key: section.key=value (repeatable).")
    ] = None,
) -> None:
    """Train one configuration; the resolved config, metrics (JSON lines) and checkpoint go to --out."""
    from trainers.engine import CONFIG_FILE, NonFiniteLossError, fit
    from trainers.tfclip.config import config_to_yaml, load_config

    with user_errors():
        overrides = _parse_overrides(set_ or [])
        if data is not None:
            overrides["data.root"] = str(data)
        config = load_config(config_path, overrides=overrides)
        max_epochs = epochs if epochs is not None else config.optim.epochs
        if max_epochs < 1:
            raise ValueError(f"--epochs is {max_epochs}, but must be >= 1")
        # The inputs first: a run that cannot start writes nothing (not even its config.yaml).
        weights = config.model.weights
        if weights is not None and not weights.is_file():
            raise ValueError(f"model.weights: {weights} does not exist (weights come from a local file)")
        if not config.data.root.is_dir():
            raise ValueError(
                f"data.root: {config.data.root} is not a folder (generate one: agvp-hpo data synth PATH)"
            )
        run_dir = out or Path("runs") / config_path.stem
        if run_dir.exists() and not run_dir.is_dir():
            raise ValueError(f"--out {run_dir} is a file, but must be a folder")
        if resume is None and (run_dir / METRICS_FILE).exists():
            raise ValueError(f"{run_dir} already holds a run; pass --resume {run_dir} or another --out")
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / CONFIG_FILE).write_text(config_to_yaml(config), encoding="utf-8")
        table = Table(title=f"training {config.preset} -> {run_dir}", title_justify="left")
        for column in ("epoch", "loss", "val mAP", "val R1", "A2G mAP", "G2A mAP", "s"):
            table.add_column(column, justify="right")
        started = time.perf_counter()
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("loss {task.fields[loss]:.3f}"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as progress:
            epoch_task = progress.add_task("epochs", total=max_epochs, loss=float("nan"))
            step_task = progress.add_task("  steps", total=None, loss=float("nan"))

            def on_step(phase: str, done: int, total: int, loss: float) -> None:
                progress.update(step_task, completed=done, total=total, loss=loss)

            def on_epoch(result: dict[str, Any]) -> None:
                with (run_dir / METRICS_FILE).open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(result) + "\n")
                progress.update(
                    epoch_task, completed=result["epoch"], loss=result.get("train_loss", float("nan"))
                )
                table.add_row(
                    str(result["epoch"]),
                    f"{result.get('train_loss', float('nan')):.3f}",
                    f"{100 * result['val_map']:.2f}",
                    f"{100 * result['val_r1']:.2f}",
                    f"{100 * result['val_a2g_map']:.2f}",
                    f"{100 * result['val_g2a_map']:.2f}",
                    f"{result['train_seconds'] + result['eval_seconds']:.1f}",
                )

            try:
                fit(
                    config,
                    max_epochs=max_epochs,
                    checkpoint_dir=run_dir,
                    resume_from=resume,
                    report=on_epoch,
                    progress=on_step,
                )
            except NonFiniteLossError as error:
                raise fail(f"training diverged: {error}") from None
    console.print(table)
    console.print(
        f"done in {time.perf_counter() - started:.0f} s; checkpoint, config and {METRICS_FILE} in {run_dir}"
    )
