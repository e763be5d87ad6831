"""Study files: the bundled ones load, short and long forms agree, bundled-path fallback, and every kind of
mistake gives its own one-line message naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hpo.space import SearchSpace
from hpo.study import (
    HyperbandSpec,
    MfhoSpec,
    StudyError,
    StudySpec,
    bundled_study_names,
    dump_study,
    load_study,
    loads_study,
    parse_duration,
    resolve_study_path,
)
from search_spaces import BUNDLED_DIR
from trainers.errors import AgvpError

BUNDLED = ["mfho.yaml", "asha.yaml", "hyperband.yaml", "demo.yaml"]

#: A valid study, one YAML snippet per top-level section; cases replace or drop sections.
BASE = {
    "name": "name: t-1",
    "space": "space:\n  optim.lr: {loguniform: [1e-6, 1e-4]}\n  model.neck: {choice: [bn, in]}",
    "fidelity": "fidelity: {min: 1, max: 27, eta: 3}",
    "scheduler": "scheduler: {kind: hyperband}",
    "budget": "budget: {max_trials: 10}",
    "trainer": "trainer: {data: data}",
}


def study_text(**sections: str | None) -> str:
    merged = {**BASE, **sections}
    return "\n".join(text for text in merged.values() if text) + "\n"


def with_param(line: str) -> str:
    """The base space plus one more parameter line."""
    return f"{BASE['space']}\n  {line}"


def write(tmp_path: Path, text: str, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- bundled files ------------------------------------------------------------------------------------------


def test_bundled_names() -> None:
    assert sorted(BUNDLED) == [n for n in bundled_study_names() if n in BUNDLED]


@pytest.mark.parametrize("name", BUNDLED)
def test_every_bundled_file_loads_and_round_trips(name: str) -> None:
    spec = load_study(BUNDLED_DIR / name)
    assert spec.space.dimensions >= 4
    assert all("." in key for key in spec.space.names)  # dotted trainer keys
    assert spec.budget.max_trials or spec.budget.max_resource or spec.budget.wall_clock
    assert loads_study(dump_study(spec)) == spec
    config = spec.space.sample(np.random.default_rng(0))
    assert spec.space.validate_config(config) == config


def test_bundled_gpu_studies_share_the_seed_report_space() -> None:
    specs = {name: load_study(BUNDLED_DIR / name) for name in ("mfho.yaml", "asha.yaml", "hyperband.yaml")}
    spaces = {spec.space.to_dict().__repr__() for spec in specs.values()}
    assert len(spaces) == 1
    mfho = specs["mfho.yaml"]
    # the best general pair of benchmarks/search_quality.py, from the published recipe (its comments say why)
    assert isinstance(mfho.scheduler, HyperbandSpec) and mfho.searcher.kind == "mf-tpe"
    assert mfho.prior is not None and mfho.prior.from_preset and mfho.resources.gpu == 1
    assert mfho.space["loss.id_weight"].low <= 0.25  # type: ignore[union-attr]  # TF-CLIP's ID weight
    assert (mfho.fidelity.min, mfho.fidelity.max, mfho.fidelity.eta) == (1, 81, 3)
    assert mfho.space["data.transform.size"].choices == ["256x128", "288x144"]  # type: ignore[union-attr]
    assert mfho.space["data.batch.p"].choices == [3, 4, 6]  # type: ignore[union-attr]
    assert str(mfho.trainer.data) == "/data/AG-VPReID"
    assert str(mfho.trainer.weights) == "/weights/ViT-B-16.pt"
    assert isinstance(specs["hyperband.yaml"].scheduler, HyperbandSpec)
    assert specs["asha.yaml"].scheduler.kind == "asha"


def test_demo_is_cpu_only_and_small() -> None:
    demo = load_study(BUNDLED_DIR / "demo.yaml")
    assert demo.resources.gpu == 0 and demo.trainer.preset == "tiny-cpu"
    assert str(demo.trainer.data) == ".demo/data" and demo.trainer.weights is None
    assert (demo.fidelity.min, demo.fidelity.max, demo.fidelity.eta) == (1, 9, 3)
    assert demo.scheduler.kind == "mfho" and demo.budget.max_trials is not None  # 2 rounds of 9
    assert demo.budget.max_trials <= 20
    assert set(demo.space.names) == {
        "optim.lr",
        "optim.weight_decay",
        "loss.triplet_margin",
        "model.temporal_pool",
    }


# --- forms and defaults -------------------------------------------------------------------------------------


def test_short_and_long_forms_give_the_same_study(tmp_path: Path) -> None:
    short = """\
  lr: {loguniform: [1e-6, 1e-4]}
  margin: {uniform: [0, 1]}
  warmup: {randint: [1, 10]}
  pool: {choice: [mean, attention]}
  heads: {choice: [2, 4], when: {pool: attention}}
  seed: 3
"""
    long = """\
  lr: {type: float, low: 1.0e-6, high: 1.0e-4, log: true}
  margin: {type: float, low: 0.0, high: 1.0}
  warmup: {type: int, low: 1, high: 10, log: false}
  pool: {type: categorical, choices: [mean, attention]}
  heads: {type: categorical, choices: [2, 4], condition: {parent: pool, values: [attention]}}
  seed: {type: fixed, value: 3}
"""
    a = load_study(write(tmp_path, study_text(space="space:\n" + short), "short.yaml"))
    b = load_study(write(tmp_path, study_text(space="space:\n" + long), "long.yaml"))
    assert isinstance(a.space, SearchSpace)
    assert a.space == b.space and a == b
    assert a.space["lr"].low == 1e-6  # type: ignore[union-attr]  # 1e-6 is a number, not YAML 1.1's string


def test_defaults_and_shorthands() -> None:
    spec = loads_study(study_text(scheduler="scheduler: asha", searcher="searcher: mf-tpe"))
    assert spec.scheduler.kind == "asha" and spec.scheduler.mode == "promotion"  # type: ignore[union-attr]
    assert spec.searcher.kind == "mf-tpe" and spec.searcher.random_fraction == pytest.approx(1 / 3)
    assert spec.objective.metric == "val_map" and spec.objective.mode == "max"
    assert spec.resources.cpu == 1 and spec.resources.gpu == 0
    assert spec.trainer.name == "tfclip" and spec.trainer.preset == "tiny-cpu"
    assert str(spec.storage.root) == "results"
    assert spec.fidelity.reduction_factor == 3
    assert (
        loads_study(study_text(fidelity="fidelity: {max: 27, eta: 3.0}")).fidelity.eta == 3
    )  # whole floats ok
    mfho = loads_study(study_text(scheduler="scheduler: {kind: mfho}")).scheduler
    assert isinstance(mfho, MfhoSpec) and mfho.promote_fraction is None  # the core takes 1 / eta
    assert mfho.core_options() == {"initial_fidelity": None, "promote_fraction": None, "max_rounds": None}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("2h", 7200), ("1.5h", 5400), ("1h30m", 5400), ("1d", 86400), (45, 45)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert loads_study(study_text(budget=f"budget: {{wall_clock: {text}}}")).budget.wall_clock == seconds


@pytest.mark.parametrize("gpu", ["0", "0.25", "1", "2"])
def test_valid_gpu_requests(gpu: str) -> None:
    assert loads_study(study_text(resources=f"resources: {{gpu: {gpu}}}")).resources.gpu == float(gpu)


# --- bundled path fallback ----------------------------------------------------------------------------------


def test_fallback_to_bundled_files_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for given in ("spaces/mfho.yaml", "search_spaces/mfho.yaml", "mfho.yaml", "mfho"):
        assert resolve_study_path(given) == BUNDLED_DIR / "mfho.yaml"
    assert load_study("spaces/demo.yaml").name == "demo"


def test_a_local_file_wins_over_the_bundled_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spaces").mkdir()
    write(tmp_path / "spaces", study_text(name="name: mine"), "mfho.yaml")
    assert resolve_study_path("spaces/mfho.yaml") == Path("spaces/mfho.yaml")
    assert load_study("spaces/mfho.yaml").name == "mine"


def test_no_fallback_for_unknown_names_or_other_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StudyError) as caught:
        load_study("spaces/nope.yaml")
    message = str(caught.value)
    assert message.startswith("spaces/nope.yaml: file does not exist")
    assert all(name in message for name in BUNDLED)
    for missing in ("configs/mfho.yaml", str(tmp_path / "mfho.yaml")):
        with pytest.raises(StudyError, match="file does not exist"):
            resolve_study_path(missing)


# --- malformed study files ----------------------------------------------------------------------------------

#: (case id, study text, field path the message must name, fragment of the rule)
FIELD_CASES = [
    ("unknown-top-key", study_text(shceduler="shceduler: {}"), "shceduler", "(did you mean 'scheduler'?)"),
    ("unknown-nested-key", study_text(fidelity="fidelity: {max: 27, etta: 3}"), "fidelity.etta", "'eta'"),
    (
        "unknown-trainer-key",
        study_text(trainer="trainer: {data: d, overides: {}}"),
        "trainer.overides",
        "did you mean 'overrides'",
    ),
    (
        "option-of-another-scheduler",
        study_text(scheduler="scheduler: {kind: hyperband, grace_period: 3}"),
        "scheduler.grace_period",
        "valid keys for kind 'hyperband': kind, bracket_order",
    ),
    (
        "unknown-scheduler-kind",
        study_text(scheduler="scheduler: {kind: asah}"),
        "scheduler.kind",
        "one of fifo, hyperband, asha, mfho, mfho-hedge, ray-asha, ray-hyperband; got 'asah' "
        "(did you mean 'asha'?)",
    ),
    (
        "scheduler-without-kind",
        study_text(scheduler="scheduler: {mode: promotion}"),
        "scheduler.kind",
        "required",
    ),
    ("scheduler-not-mapping", study_text(scheduler="scheduler: 3"), "scheduler", "must be a mapping"),
    (
        "unknown-searcher",
        study_text(searcher="searcher: {kind: bohb}"),
        "searcher.kind",
        "random, tpe, mf-tpe",
    ),
    (
        "searcher-option-for-random",
        study_text(searcher="searcher: {kind: random, random_fraction: 0.5}"),
        "searcher.random_fraction",
        "applies only to kind 'mf-tpe'",
    ),
    ("bad-mode", study_text(objective="objective: {mode: maximize}"), "objective.mode", "one of max, min"),
    ("int-not-number", study_text(fidelity="fidelity: {max: lots}"), "fidelity.max", "valid integer"),
    ("float-not-number", study_text(space=with_param("x: {uniform: [a, 1]}")), "space.x.low", "valid number"),
    ("low-eq-high", study_text(space=with_param("x: {uniform: [1, 1]}")), "space.x.low", "must be < high"),
    (
        "low-gt-high",
        study_text(space=with_param("x: {uniform: [1, 0.5]}")),
        "space.x.low",
        "low=1 and high=0.5",
    ),
    (
        "log-low-zero",
        study_text(space=with_param("x: {loguniform: [0, 1e-4]}")),
        "space.x.low",
        "must be > 0 for log scale, got 0",
    ),
    ("int-bound-fraction", study_text(space=with_param("x: {randint: [1, 2.5]}")), "space.x.high", "integer"),
    (
        "empty-choices",
        study_text(space=with_param("x: {choice: []}")),
        "space.x.choices",
        "must not be empty",
    ),
    (
        "duplicate-choices",
        study_text(space=with_param("x: {choice: [a, b, a]}")),
        "space.x.choices[2]",
        "unique",
    ),
    (
        "nested-choice",
        study_text(space=with_param("x: {choice: [[1]]}")),
        "space.x.choices[0]",
        "string, number",
    ),
    (
        "param-type-typo",
        study_text(space=with_param("x: {type: flaot}")),
        "space.x.type",
        "did you mean 'float'",
    ),
    (
        "long-form-key-typo",
        study_text(space=with_param("x: {type: float, low: 0, hgh: 1}")),
        "space.x.hgh",
        "did you mean 'high'",
    ),
    (
        "short-form-extra-key",
        study_text(space=with_param("x: {uniform: [0, 1], log: true}")),
        "space.x.log",
        "short",
    ),
    ("bare-list", study_text(space=with_param("x: [1, 2]")), "space.x", "{choice: [...]}"),
    ("null-param", study_text(space=with_param("x: null")), "space.x", "has no definition"),
    ("space-not-mapping", study_text(space="space: [a, b]"), "space", "must be a mapping"),
    ("space-all-fixed", study_text(space="space: {a: 1, b: x}"), "space", "at least one searched"),
    (
        "bad-param-name",
        study_text(space=with_param("my lr: {uniform: [0, 1]}")),
        "space",
        "'my lr' is invalid",
    ),
    (
        "unknown-parent",
        study_text(space=with_param("x: {choice: [1, 2], when: {model.nek: bn}}")),
        "space.x.condition.parent",
        "unknown parameter 'model.nek' (did you mean 'model.neck'?)",
    ),
    (
        "float-parent",
        study_text(space=with_param("x: {choice: [1, 2], when: {optim.lr: 1}}")),
        "space.x.condition.parent",
        "is a float parameter",
    ),
    (
        "condition-value-not-a-choice",
        study_text(space=with_param("x: {choice: [1, 2], when: {model.neck: gn}}")),
        "space.x.condition.values[0]",
        "not a choice of 'model.neck'",
    ),
    (
        "condition-cycle",
        study_text(space=with_param("x: {choice: [1], when: {y: 1}}\n  y: {choice: [1], when: {x: 1}}")),
        "space.x.condition.parent",
        "forms a cycle: x -> y -> x",
    ),
    (
        "when-two-parents",
        study_text(space=with_param("x: {choice: [1], when: {model.neck: bn, optim.lr: 1}}")),
        "space.x.when",
        "exactly one parent",
    ),
    ("fidelity-min-zero", study_text(fidelity="fidelity: {min: 0, max: 27}"), "fidelity.min", ">= 1"),
    (
        "fidelity-max-lt-min",
        study_text(fidelity="fidelity: {min: 9, max: 3}"),
        "fidelity.max",
        "> min (9), got 3",
    ),
    ("fidelity-eta-1", study_text(fidelity="fidelity: {max: 27, eta: 1}"), "fidelity.eta", ">= 2, got 1"),
    ("fidelity-eta-float", study_text(fidelity="fidelity: {max: 27, eta: 2.5}"), "fidelity.eta", "integer"),
    (
        "fidelity-resource",
        study_text(fidelity="fidelity: {resource: steps, max: 27}"),
        "fidelity.resource",
        "epochs",
    ),
    (
        "hyperband-needs-two-rungs",
        study_text(fidelity="fidelity: {min: 3, max: 6, eta: 3}"),
        "fidelity.max",
        "must be >= eta * min (3 * 3 = 9) for scheduler 'hyperband'",
    ),
    (
        "removed-brackets-option",
        study_text(scheduler="scheduler: {kind: hyperband, brackets: 9}"),
        "scheduler.brackets",
        "did you mean 'bracket_order'?",
    ),
    (
        "mfho-initial-at-max",
        study_text(scheduler="scheduler: {kind: mfho, initial_fidelity: 27}"),
        "scheduler.initial_fidelity",
        "must be one of the rungs below fidelity.max (1, 3, 9), got 27",
    ),
    (
        "mfho-fraction-zero",
        study_text(scheduler="scheduler: {kind: mfho, promote_fraction: 0}"),
        "scheduler.promote_fraction",
        "must be > 0, got 0",
    ),
    (
        "ray-asha-grace",
        study_text(scheduler="scheduler: {kind: ray-asha, grace_period: 27}"),
        "scheduler.grace_period",
        "< fidelity.max (27)",
    ),
    ("bad-duration", study_text(budget="budget: {wall_clock: 2 hours}"), "budget.wall_clock", "'2 hours'"),
    (
        "zero-duration",
        study_text(budget="budget: {wall_clock: 0s}"),
        "budget.wall_clock",
        "positive duration",
    ),
    ("no-budget-limit", study_text(budget="budget: {}"), "budget", "needs at least one limit"),
    ("bool-as-int", study_text(budget="budget: {max_trials: yes}"), "budget.max_trials", "number, got True"),
    ("zero-trials", study_text(budget="budget: {max_trials: 0}"), "budget.max_trials", ">= 1"),
    (
        "unit-without-resource",
        study_text(budget="budget: {max_trials: 3, unit: fbe}"),
        "budget.unit",
        "max_resource",
    ),
    ("negative-cpu", study_text(resources="resources: {cpu: -1}"), "resources.cpu", "must be > 0, got -1"),
    ("infinite-cpu", study_text(resources="resources: {cpu: .inf}"), "resources.cpu", "finite"),
    ("fractional-multi-gpu", study_text(resources="resources: {gpu: 1.5}"), "resources.gpu", "got 1.5"),
    (
        "searched-and-overridden",
        study_text(trainer="trainer: {data: d, overrides: {optim.lr: 0.1}}"),
        "trainer.overrides.optim.lr",
        "is also in space",
    ),
    (
        "searched-and-overridden-nested",
        study_text(trainer="trainer: {data: d, overrides: {optim: {lr: 0.1}}}"),
        "trainer.overrides.optim.lr",
        "either searched (space) or fixed (overrides)",
    ),
    ("missing-data", study_text(trainer="trainer: {preset: x}"), "trainer.data", "is required"),
    ("empty-data", study_text(trainer="trainer: {data: ''}"), "trainer.data", "empty string"),
    ("missing-section", study_text(trainer=None), "trainer", "is required"),
    ("name-with-spaces", study_text(name="name: my study"), "name", "got 'my study'"),
]


@pytest.mark.parametrize(
    ("text", "field", "fragment"), [c[1:] for c in FIELD_CASES], ids=[c[0] for c in FIELD_CASES]
)
def test_malformed_study_names_file_field_and_rule(
    tmp_path: Path, text: str, field: str, fragment: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(StudyError) as caught:
        load_study(path)
    error = caught.value
    message = str(error)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert field in message and fragment in message, message
    assert error.field == field
    assert isinstance(error, AgvpError)


#: Mistakes of the file itself, before any field: (case id, text or None for "no file", fragment).
FILE_CASES = [
    ("yaml-syntax", "name: t\nspace: x\n  bad: 1\n", "invalid YAML at line 3"),
    ("duplicate-key", study_text(name="name: a\nname: b"), "line 2, column 1: duplicate key 'name'"),
    ("top-level-list", "- name\n- space\n", "top level must be a mapping of study settings"),
    ("top-level-scalar", "just text\n", "got a str"),
    ("empty-file", "", "is empty"),
    ("non-string-key", "1: a\n", "top-level key 1 must be a string"),
    ("missing-file", None, "file does not exist"),
]


@pytest.mark.parametrize(("text", "fragment"), [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_malformed_file_is_one_line_naming_it(tmp_path: Path, text: str | None, fragment: str) -> None:
    path = write(tmp_path, text) if text is not None else tmp_path / "absent.yaml"
    with pytest.raises(StudyError) as caught:
        load_study(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert fragment in message, message


def test_a_directory_is_not_a_study(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match="is a directory"):
        load_study(tmp_path)


def test_specs_are_frozen() -> None:
    spec = loads_study(study_text())
    assert isinstance(spec, StudySpec)
    with pytest.raises(ValueError, match="frozen"):
        spec.name = "other"  # type: ignore[misc]
