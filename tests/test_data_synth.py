from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainers.data.attributes import read_attribute_csv
from trainers.data.index import read_dataset
from trainers.data.layout import ATTRIBUTE_FILES
from trainers.data.synth import SynthConfig, SynthSummary, generate_dataset
from trainers.errors import DataError

TINY = SynthConfig(seed=3, train_ids=4, test_ids=2, distractor_ids=1, frames=(2, 4))


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_deterministic_by_seed(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "a", TINY)
    generate_dataset(tmp_path / "b", TINY)
    generate_dataset(tmp_path / "c", TINY.model_copy(update={"seed": 4}))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_real_layout_and_attribute_files(small_dataset: tuple[Path, SynthSummary]) -> None:
    root, summary = small_dataset
    for relative in (
        "train",
        "case1_aerial_to_ground/query",
        "case1_aerial_to_ground/gallery",
        "case2_ground_to_aerial/query",
        "case2_ground_to_aerial/gallery",
        "attributes/train.csv",
        "attributes/case2_ground_to_aerial/gallery.csv",
        "true_ids.csv",
    ):
        assert (root / relative).exists(), relative
    index = read_dataset(root)
    for split in summary.tracklets:
        table = read_attribute_csv(root / ATTRIBUTE_FILES[split])
        assert set(table.rows) == {t.pid for t in index.split(split)}
    # distractors: the case-2 gallery has more identities than the case-1 query
    assert summary.identities["case2_gallery"] == summary.identities["case1_query"] + 2


def test_attributes_agree_across_splits_for_one_identity(small_root: Path) -> None:
    index = read_dataset(small_root)
    query = {t.true_pid: t.pid for t in index.split("case1_query")}
    gallery = {t.true_pid: t.pid for t in index.split("case1_gallery")}
    query_attrs = index.attributes["case1_query"]
    gallery_attrs = index.attributes["case1_gallery"]
    for true_pid, folder in query.items():
        assert query_attrs.get(folder) == gallery_attrs.get(gallery[true_pid])


def test_aerial_views_are_small_and_high_altitude_smaller(small_root: Path) -> None:
    index = read_dataset(small_root, splits=["train"])
    heights: dict[object, list[int]] = {"ground": [], 80: [], 120: []}
    for tracklet in index.tracklets:
        with Image.open(small_root / tracklet.frames[0]) as image:
            heights["ground" if not tracklet.is_aerial else tracklet.altitude_m].append(image.height)
    assert np.median(heights[120]) < np.median(heights[80]) < np.median(heights["ground"]) / 2


def test_tracklet_length_range_includes_short_ones(small_root: Path) -> None:
    lengths = [len(t.frames) for t in read_dataset(small_root).tracklets]
    assert min(lengths) >= 3 and max(lengths) <= 12
    assert min(lengths) < 8  # shorter than the usual T=8: exercises padding


def test_refuses_non_empty_output_and_overwrites_on_request(tmp_path: Path) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="not empty"):
        generate_dataset(out, TINY)
    generate_dataset(out, TINY, overwrite=True)
    assert not (out / "keep.txt").exists()
    assert (out / "train").is_dir()


def test_interrupted_run_leaves_nothing_behind(tmp_path: Path) -> None:
    def explode(done: int, total: int) -> None:
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path / "data", TINY, on_progress=explode)
    assert list(tmp_path.iterdir()) == []


def test_true_id_release(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "d", TINY.model_copy(update={"id_mode": "true", "write_true_ids": False}))
    index = read_dataset(tmp_path / "d", test_ids="true")
    query_ids = {t.pid for t in index.split("case1_query")}
    assert query_ids == {t.pid for t in index.split("case1_gallery")}
    assert not (tmp_path / "d" / "true_ids.csv").exists()


def test_any_appearance_renders_at_any_size() -> None:
    from trainers.data.synth import draw_appearance, render_person

    rng = np.random.default_rng(0)
    for i in range(300):
        look = draw_appearance(np.random.default_rng([5, i]))
        height = int(rng.integers(12, 200))
        width = max(6, int(height * rng.uniform(0.3, 0.7)))
        image = render_person(look, height, width, i % 2, (120, 120, 120))
        assert image.size == (width, height)
