"""``agvp-hpo data synth`` and ``agvp-hpo data inspect``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
import yaml
from pydantic import TypeAdapter, ValidationError
from rich.table import Table

from hpo.cli._common import console, progress_bar, user_errors
from trainers.data.config import ExtraSourceConfig
from trainers.data.index import DatasetIndex, scan_dataset
from trainers.data.inspection import InspectionReport, summarise
from trainers.data.layout import ALL_LAYOUTS, EXTRA_LAYOUTS
from trainers.data.sources import scan_extra_sources
from trainers.data.synth import SynthConfig, generate_dataset
from trainers.data.synth_sources import generate_source

data_app = typer.Typer(
    help="Generate and inspect datasets: AG-VPReID and the extra training sources' layouts.",
    no_args_is_help=True,
)


#: ``data synth --scale``: training identities and tracklets per identity and platform (inclusive range).
#: agvp: 689 ids x 2 platforms x 4 on average = ~5.5k training tracklets (AG-VPReID: 689 ids, 5,317).
SYNTH_SCALES: dict[str, tuple[int, tuple[int, int]]] = {"demo": (64, (1, 3)), "agvp": (689, (3, 5))}


def _check_layout(option: str, layout: str, allowed: tuple[str, ...]) -> None:
    if layout not in allowed:
        raise ValueError(f"{option} is {layout!r}, but must be one of {', '.join(allowed)}")


@data_app.command("synth")
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to create (must be empty or absent).")],
    ids: Annotated[
        int | None, typer.Option("--ids", help="Training identities (default: 64, or --scale's).")
    ] = None,
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
    layout: Annotated[
        str,
        typer.Option(
            "--layout",
            help="agvp (AG-VPReID), g2a-vreid or generic (extra training sources; --id-mode, --true-ids and "
            "attributes apply to agvp only).",
        ),
    ] = "agvp",
    scale: Annotated[
        str,
        typer.Option(
            "--scale",
            help="demo (small, default) or agvp: AG-VPReID's training scale, 689 identities x 3-5 tracklets "
            "per platform (~5.5k tracklets; the release has 5,317); frames per tracklet stay "
            "--min/--max-frames.",
        ),
    ] = "demo",
) -> None:
    """Write a learnable synthetic dataset in exactly the on-disk layout named by --layout."""
    with user_errors():
        _check_layout("--layout", layout, ALL_LAYOUTS)
        if scale not in SYNTH_SCALES:
            raise ValueError(f"--scale is {scale!r}, but must be one of {', '.join(SYNTH_SCALES)}")
        scale_ids, per_platform = SYNTH_SCALES[scale]
        config = SynthConfig(
            seed=seed,
            train_ids=ids if ids is not None else scale_ids,
            tracklets_per_platform=per_platform,
            test_ids=test_ids,
            distractor_ids=distractors,
            frames=(min_frames, max_frames),
            id_mode=id_mode,  # type: ignore[arg-type]  # validated by pydantic
            write_true_ids=true_ids,
        )
        with progress_bar() as progress:
            task = progress.add_task("rendering tracklets", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            if layout == "agvp":
                summary = generate_dataset(out, config, overwrite=overwrite, on_progress=advance)
            else:
                summary = generate_source(out, layout, config, overwrite=overwrite, on_progress=advance)
    table = Table(title=f"synthetic {layout} dataset -> {out}", title_justify="left")
    for column in ("split", "identities", "tracklets"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for split, count in summary.tracklets.items():
        table.add_row(split, str(summary.identities[split]), str(count))
    console.print(table)
    ids = f", test ids {id_mode}" if layout == "agvp" else ""
    console.print(f"{summary.frames} frames in {summary.seconds:.1f} s (seed {seed}{ids})")


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
    if report.splits:
        console.print(overview)
    if report.sources:
        sources = Table(title="extra training sources (identities renumbered after AG-VPReID's)")
        for column in (
            "source",
            "layout",
            "root",
            "new ids",
            "split: ids/tracklets/frames",
            "platforms",
            "cameras",
        ):
            sources.add_column(column)
        for source in report.sources:
            sources.add_row(
                source.label,
                source.layout,
                source.root,
                f"{source.first_pid}..{source.last_pid} ({source.total.identities})",
                ", ".join(
                    f"{name} {c.identities}/{c.tracklets}/{c.frames}" for name, c in source.per_split.items()
                ),
                ", ".join(f"{name} {c.identities}/{c.tracklets}" for name, c in source.platforms.items()),
                ", ".join(f"{label}->C{camera}" for label, camera in source.camera_map.items()),
            )
        console.print(sources)
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


def _extra_option(value: str) -> ExtraSourceConfig:
    """``--extra LAYOUT:PATH`` -> a source with the layout's default splits and cameras."""
    layout, separator, root = value.partition(":")
    if not separator or not root:
        raise ValueError(f"--extra is {value!r}, but must look like LAYOUT:PATH (e.g. g2a-vreid:/data/G2A)")
    _check_layout("--extra layout", layout, EXTRA_LAYOUTS)
    return ExtraSourceConfig(root=Path(root), layout=layout)  # type: ignore[arg-type]  # checked above


def _sources_of_config(path: Path) -> list[ExtraSourceConfig]:
    """``data.extra_sources`` of a trainer config file (the rest of the file is not needed here)."""
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as error:
        raise ValueError(f"{path}: cannot read ({error.strerror})") from None
    except yaml.YAMLError:
        raise ValueError(f"{path}: invalid YAML") from None
    data = raw.get("data") if isinstance(raw, dict) else None
    entries = data.get("extra_sources", []) if isinstance(data, dict) else []
    try:
        return list(TypeAdapter(tuple[ExtraSourceConfig, ...]).validate_python(entries))
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in ("data.extra_sources", *first["loc"]))
        raise ValueError(f"{path}: {where}: {first['msg'].removeprefix('Value error, ')}") from None


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
    layout: Annotated[
        str,
        typer.Option(
            "--layout", help="Layout of PATH: agvp, or g2a-vreid / generic to inspect one source alone."
        ),
    ] = "agvp",
    extra: Annotated[
        list[str] | None,
        typer.Option(
            "--extra", help="An extra training source LAYOUT:PATH (repeatable), with default settings."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Trainer config file whose data.extra_sources are inspected too."),
    ] = None,
) -> None:
    """Counts, frame statistics, attribute coverage, each extra source's counts and renumbered ids, and every
    problem found. Exit 1 when problems exist."""
    with user_errors():
        if test_ids not in ("auto", "masked", "true"):
            raise ValueError(f"--test-ids is {test_ids!r}, but must be one of auto, masked, true")
        _check_layout("--layout", layout, ALL_LAYOUTS)
        mode: Literal["auto", "masked", "true"] = test_ids  # type: ignore[assignment]
        sources = [_extra_option(value) for value in extra or []]
        if config is not None:
            sources += _sources_of_config(config)
        if layout != "agvp":
            sources.insert(0, ExtraSourceConfig(root=path, layout=layout))  # type: ignore[arg-type]
        with progress_bar() as progress:
            task = progress.add_task("scanning tracklets", total=None)
            if layout == "agvp":
                index, problems = scan_dataset(
                    path,
                    test_ids=mode,
                    check_images=check_images,
                    on_progress=lambda n: progress.advance(task, n),
                )
            else:  # a source alone: its identities are numbered from 1
                index, problems = DatasetIndex(root=path, tracklets=()), []
            index, found = scan_extra_sources(
                index, sources, check_images=check_images, on_progress=lambda n: progress.advance(task, n)
            )
        problems += found
        report = summarise(index, problems)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=1))
    else:
        _render_report(report)
    if problems:
        raise typer.Exit(1)


cache_app = typer.Typer(
    help="The shared frame cache: frames decoded and resized once per dataset, size and interpolation.",
    no_args_is_help=True,
)
data_app.add_typer(cache_app, name="cache")
CacheDir = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir", help="Cache root (runtime.cache_dir); default $AGVP_CACHE or ~/.cache/agvp-hpo."
    ),
]


@cache_app.command("build")
def cache_build(
    path: Annotated[Path, typer.Argument(help="Dataset root in the AG-VPReID layout.")],
    size: Annotated[
        str, typer.Option("--size", help="Frame size HEIGHTxWIDTH (data.transform.size).")
    ] = "256x128",
    interpolation: Annotated[
        str,
        typer.Option("--interpolation", help="bilinear | bicubic | nearest (data.transform.interpolation)."),
    ] = "bilinear",
    split: Annotated[
        list[str] | None,
        typer.Option("--split", help="Split to cache (repeatable); training reads train (the default)."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Trainer config file whose data.extra_sources are added.")
    ] = None,
    cache_dir: CacheDir = None,
) -> None:
    """Build (or find) the entry a trainer with these settings reads: the train split (plus --config's extra
    sources) at --size and --interpolation."""
    from trainers.data.config import TransformConfig
    from trainers.data.frame_cache import ensure_frame_cache
    from trainers.data.index import read_dataset
    from trainers.data.sources import read_extra_sources

    with user_errors():
        height, width = TransformConfig.parse_size(size)
        if interpolation not in ("bilinear", "bicubic", "nearest"):
            raise ValueError(
                f"--interpolation is {interpolation!r}, but must be one of bilinear, bicubic, nearest"
            )
        transform = TransformConfig(height=height, width=width, interpolation=interpolation)  # type: ignore[arg-type]
        index = read_dataset(path, splits=split or ["train"])
        if config is not None:
            index = read_extra_sources(index, _sources_of_config(config))
        with progress_bar() as progress:
            task = progress.add_task("decoding frames", total=None)
            entry = ensure_frame_cache(
                index,
                transform,
                cache_dir,
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
    console.print(
        f"{entry.folder}: {len(entry.rows)} tracklets, {entry.frames.shape[0]} frames "
        f"{height}x{width} {interpolation}, {entry.nbytes / 2**20:.1f} MiB"
    )


@cache_app.command("info")
def cache_info(cache_dir: CacheDir = None) -> None:
    """List the cache's entries."""
    from trainers.data.frame_cache import list_entries

    with user_errors():
        entries = list_entries(cache_dir)
    table = Table(title="frame cache entries", title_justify="left")
    for column in ("key", "size", "interpolation", "tracklets", "frames", "MiB"):
        table.add_column(column)
    for e in entries:
        table.add_row(
            e.key,
            f"{e.height}x{e.width}",
            e.interpolation,
            str(e.tracklets),
            str(e.frames),
            f"{e.bytes / 2**20:.1f}",
        )
    console.print(table if entries else "no frame cache entries")


@cache_app.command("clear")
def cache_clear(
    key: Annotated[list[str] | None, typer.Argument(help="Entries to remove (default: all).")] = None,
    cache_dir: CacheDir = None,
) -> None:
    """Remove entries (all by default, with unfinished builds' leftovers)."""
    from trainers.data.frame_cache import clear_entries

    with user_errors():
        removed = clear_entries(cache_dir, key or ())
    console.print(f"removed {len(removed)} frame cache entr{'y' if len(removed) == 1 else 'ies'}")
