"""``agvp-hpo data synth`` and ``agvp-hpo data inspect``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from hpo.cli._common import console, progress_bar, user_errors
from trainers.data.index import scan_dataset
from trainers.data.inspection import InspectionReport, summarise
from trainers.data.synth import SynthConfig, generate_dataset

data_app = typer.Typer(help="Generate and inspect datasets in the AG-VPReID layout.", no_args_is_help=True)


@data_app.command("synth")
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to create (must be empty or absent).")],
    ids: Annotated[int, typer.Option("--ids", help="Training identities.")] = 64,
    test_ids: Annotated[int, typer.Option("--test-ids", help="Test identities (cases 1 and 2).")] = 32,
    distractors: Annotated[
        int, typer.Option("--distractors", help="Distractor ids in the case 2 gallery.")
    ] = 16,
    seed: Annotated[int, typer.Option("--seed", help="Everything is a function of the seed.")] = 0,
    min_frames: Annotated[int, typer.Option("--min-frames", help="Shortest tracklet.")] = 6,
    max_frames: Annotated[int, typer.Option("--max-frames", help="Longest tracklet.")] = 20,
    id_mode: Annotated[
        str, typer.Option("--id-mode", help="'masked' test folder ids (public release) or 'true' ids.")
    ] = "masked",
    true_ids: Annotated[
        bool,
        typer.Option("--true-ids/--no-true-ids", help="Write true_ids.csv so test metrics can be scored."),
    ] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty OUT.")] = False,
) -> None:
    """Write a learnable synthetic dataset in exactly the AG-VPReID on-disk layout."""
    with user_errors():
        config = SynthConfig(
            seed=seed,
            train_ids=ids,
            test_ids=test_ids,
            distractor_ids=distractors,
            frames=(min_frames, max_frames),
            id_mode=id_mode,  # type: ignore[arg-type]  # validated by pydantic
            write_true_ids=true_ids,
        )
        with progress_bar() as progress:
            task = progress.add_task("rendering tracklets", total=None)
            summary = generate_dataset(
                out,
                config,
                overwrite=overwrite,
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
    table = Table(title=f"synthetic dataset -> {out}", title_justify="left")
    for column in ("split", "identities", "tracklets"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for split, count in summary.tracklets.items():
        table.add_row(split, str(summary.identities[split]), str(count))
    console.print(table)
    console.print(f"{summary.frames} frames in {summary.seconds:.1f} s (seed {seed}, test ids {id_mode})")


def _render_report(report: InspectionReport) -> None:
    overview = Table(title=f"{report.root}  (fingerprint {report.fingerprint}, test ids: {report.test_ids})")
    for column in (
        "split",
        "ids",
        "tracklets",
        "frames",
        "frames/tracklet min/med/max",
        "platforms",
        "altitudes",
        "cameras",
    ):
        overview.add_column(column)
    for split, s in report.splits.items():
        f = s.frames_per_tracklet
        overview.add_row(
            split,
            str(s.identities),
            str(s.tracklets),
            str(s.frames),
            f"{f['min']}/{f['median']:g}/{f['max']}",
            ", ".join(f"{k} {v}" for k, v in s.platforms.items()),
            ", ".join(f"{k} {v}" for k, v in s.altitudes.items()) or "-",
            ", ".join(f"{k} {v}" for k, v in s.cameras.items()),
        )
    console.print(overview)
    if any(s.attribute_known for s in report.splits.values()):
        coverage = Table(title="attribute coverage (share of identities with a known code)")
        coverage.add_column("attribute")
        splits = [name for name, s in report.splits.items() if s.attribute_known]
        for split in splits:
            coverage.add_column(split, justify="right")
        for attribute in report.splits[splits[0]].attribute_known:
            coverage.add_row(
                attribute, *(f"{report.splits[s].attribute_known[attribute]:.0%}" for s in splits)
            )
        coverage.add_row(
            "[dim]coerced to unknown[/]",
            *(str(report.splits[s].attributes_coerced) for s in splits),
            end_section=True,
        )
        coverage.add_row(
            "[dim]ids without a row[/]",
            *(str(report.splits[s].identities_without_attributes) for s in splits),
        )
        console.print(coverage)
    if report.problems:
        problems = Table(title=f"{len(report.problems)} problem(s)", title_style="bold red")
        problems.add_column("kind")
        problems.add_column("path")
        problems.add_column("problem")
        for problem in report.problems:
            problems.add_row(problem.kind, problem.path, problem.message)
        console.print(problems)
    else:
        console.print("[green]no problems found[/]")


@data_app.command("inspect")
def inspect(
    path: Annotated[Path, typer.Argument(help="Dataset root (the folder holding train/, case1_.../, ...).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    check_images: Annotated[
        bool,
        typer.Option("--check-images/--no-check-images", help="Decode every frame to find unreadable ones."),
    ] = True,
    test_ids: Annotated[
        str, typer.Option("--test-ids", help="auto | masked | true (see README: test identities).")
    ] = "auto",
) -> None:
    """Counts, frame statistics, attribute coverage and every problem found. Exit 1 when problems exist."""
    with user_errors():
        if test_ids not in ("auto", "masked", "true"):
            raise ValueError(f"--test-ids is {test_ids!r}, but must be one of auto, masked, true")
        mode: Literal["auto", "masked", "true"] = test_ids  # type: ignore[assignment]
        with progress_bar() as progress:
            task = progress.add_task("scanning tracklets", total=None)
            index, problems = scan_dataset(
                path,
                test_ids=mode,
                check_images=check_images,
                on_progress=lambda n: progress.advance(task, n),
            )
        report = summarise(index, problems)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=1))
    else:
        _render_report(report)
    if problems:
        raise typer.Exit(1)
