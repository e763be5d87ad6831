"""Which low fidelity predicts the full-budget ranking better per cost: fewer epochs, or fewer identities?

The seed report (Appendix A.4) defines MFHO's fidelity as "fewer epochs or using subsets of data". For
``--configs`` random configurations of the ``tiny-cpu`` preset on the synthetic dataset this trains

* the full schedule on all training identities (the reference: validation mAP after the last epoch); its
  values after ``--low-epochs`` epochs are the low-epoch fidelities (a resumed run continues exactly, so
  the value after e epochs of the full run is what an e-epoch job reports);
* the full schedule on each ``--fractions`` share of the training identities (nested subsets: what a
  ``fidelity.resource: data_fraction`` rung trains).

and reports, per fidelity, Spearman's rank correlation with the reference and the measured cost as a share
of the full run's: training seconds, and training plus the validation every epoch runs (a data-fraction run
still validates after each of its epochs). Medians over configurations. Prints a table and writes JSON.

    python benchmarks/fidelity_correlation.py [--configs 16] [--jobs 2] [--data DIR] [--json-out PATH]
        [--table-from PATH]   # recompute the table from a stored report's runs, no training
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from save_json import save_json  # benchmarks/ is on sys.path when a script runs

#: The searched parameters (a small version of search_spaces/mfho.yaml's space).
SPACE = {
    "optim.lr": ("log", 1e-4, 1e-2),
    "optim.weight_decay": ("log", 1e-5, 1e-2),
    "loss.triplet_margin": ("lin", 0.1, 0.6),
    "loss.id_weight": ("log", 0.1, 2.0),
}


def sample_configs(n: int, seed: int) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    configs = []
    for _ in range(n):
        config = {}
        for key, (scale, low, high) in SPACE.items():
            u = float(rng.random())
            config[key] = (
                float(np.exp(np.log(low) + u * np.log(high / low)))
                if scale == "log"
                else low + u * (high - low)
            )
        configs.append(config)
    return configs


def train(task: tuple[int, dict[str, float], float, int, str, str]) -> dict[str, Any]:
    """One run: ``config`` for ``epochs`` epochs on ``fraction`` of the identities (one torch thread; the
    identity-memory cache in the run's scratch folder, never the user's home)."""
    import torch

    from trainers.engine import fit
    from trainers.tfclip.config import resolve_config

    index, params, fraction, epochs, data, cache = task
    torch.set_num_threads(1)
    overrides = {**params, "data.root": data, "runtime.threads": 1, "runtime.cache_dir": cache}
    config = resolve_config({"preset": "tiny-cpu"}, overrides=overrides)
    started = time.perf_counter()
    rows = fit(config, max_epochs=epochs, data_fraction=fraction)
    return {
        "config": index,
        "fraction": fraction,
        "val_map": [round(float(r["val_map"]), 5) for r in rows],
        "train_seconds": [float(r["train_seconds"]) for r in rows],
        "eval_seconds": [float(r["eval_seconds"]) for r in rows],
        "seconds": round(time.perf_counter() - started, 2),
    }


def spearman(a: list[float], b: list[float]) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def bootstrap_interval(a: list[float], b: list[float], draws: int = 2000) -> list[float]:
    """5th and 95th percentiles of Spearman's rho over configurations resampled with replacement."""
    rng = np.random.default_rng(0)
    x, y = np.asarray(a), np.asarray(b)
    rhos = []
    for _ in range(draws):
        pick = rng.integers(0, len(x), len(x))
        if len(set(pick.tolist())) >= 4:
            rhos.append(spearman(list(x[pick]), list(y[pick])))
    if not rhos:  # fewer than 4 configurations: no interval
        return [float("nan"), float("nan")]
    return [round(float(v), 3) for v in np.nanpercentile(rhos, [5, 95])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="default: the preset's schedule (40)")
    parser.add_argument("--low-epochs", default="2,4,13")
    parser.add_argument("--fractions", default="0.111,0.333")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--json-out", type=Path, default=Path("benchmarks/results/fidelity_correlation.json"))
    parser.add_argument(
        "--table-from", type=Path, default=None, help="recompute the table from a report's runs"
    )
    args = parser.parse_args()

    from trainers.tfclip.config import resolve_config

    epochs = args.epochs or resolve_config({"preset": "tiny-cpu"}).optim.epochs
    low_epochs = [int(e) for e in args.low_epochs.split(",")]
    fractions = [float(f) for f in args.fractions.split(",")]
    if args.table_from is not None:
        stored = json.loads(args.table_from.read_text(encoding="utf-8"))
        setting = stored["setting"]
        args.configs, args.seed, epochs = setting["configs"], setting["seed"], setting["epochs"]
        low_epochs, fractions = setting["low_epochs"], setting["fractions"]
    configs = sample_configs(args.configs, args.seed)
    if args.table_from is not None:
        runs, elapsed = stored["runs"], stored["seconds"]
    else:
        runs, elapsed = train_all(args, configs, epochs, fractions)
    report(args, configs, runs, elapsed, epochs, low_epochs, fractions)


def train_all(
    args: argparse.Namespace, configs: list[dict[str, float]], epochs: int, fractions: list[float]
) -> tuple[list[dict[str, Any]], float]:
    from trainers.data.synth import generate_dataset

    with tempfile.TemporaryDirectory(prefix="agvp-fidelity-") as scratch:
        data = args.data
        if data is None:
            data = Path(scratch) / "data"
            generate_dataset(data)
        cache = str(Path(scratch) / "cache")
        tasks = [
            (i, c, f, epochs, str(data), cache) for f in [1.0, *fractions] for i, c in enumerate(configs)
        ]
        started = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            runs = []
            for run in pool.imap_unordered(train, tasks):
                runs.append(run)
                print(
                    f"config {run['config']} fraction {run['fraction']:.3f}: "
                    f"val mAP {run['val_map'][-1]:.4f} in {run['seconds']:.0f} s ({len(runs)}/{len(tasks)})",
                    flush=True,
                )
        elapsed = time.perf_counter() - started
    return runs, elapsed


def report(
    args: argparse.Namespace,
    configs: list[dict[str, float]],
    runs: list[dict[str, Any]],
    elapsed: float,
    epochs: int,
    low_epochs: list[int],
    fractions: list[float],
) -> None:
    full = {r["config"]: r for r in runs if r["fraction"] == 1.0}
    reference = [full[i]["val_map"][-1] for i in range(len(configs))]

    def share(runs_of: dict[int, dict[str, Any]], epochs_used: int, with_eval: bool) -> float:
        """Median over configurations of this fidelity's seconds / the full run's."""

        def seconds(run: dict[str, Any], upto: int) -> float:
            return sum(run["train_seconds"][:upto]) + (sum(run["eval_seconds"][:upto]) if with_eval else 0.0)

        return statistics.median(
            seconds(runs_of[i], epochs_used) / seconds(full[i], epochs) for i in range(len(configs))
        )

    table = []
    for e in low_epochs:
        values = [full[i]["val_map"][e - 1] for i in range(len(configs))]
        table.append(
            {
                "fidelity": f"{e} epochs, all identities",
                "cost_train": share(full, e, False),
                "cost_wall": share(full, e, True),
                "rho": spearman(values, reference),
                "rho_90": bootstrap_interval(values, reference),
            }
        )
    for f in fractions:
        part = {r["config"]: r for r in runs if r["fraction"] == f}
        values = [part[i]["val_map"][-1] for i in range(len(configs))]
        table.append(
            {
                "fidelity": f"{epochs} epochs, {f:.0%} of identities",
                "cost_train": share(part, epochs, False),
                "cost_wall": share(part, epochs, True),
                "rho": spearman(values, reference),
                "rho_90": bootstrap_interval(values, reference),
            }
        )
    print(f"\n{len(configs)} configurations, reference = val mAP after {epochs} epochs on all identities")
    print(f"{'fidelity':36s} {'train cost':>10s} {'wall cost':>9s} {'Spearman':>9s}  90 % bootstrap")
    for row in table:
        low, high = row["rho_90"]
        print(
            f"{row['fidelity']:36s} {row['cost_train']:10.3f} {row['cost_wall']:9.3f} {row['rho']:9.3f}  "
            f"[{low:.2f}, {high:.2f}]"
        )
    save_json(
        {
            "setting": {
                "configs": args.configs,
                "seed": args.seed,
                "epochs": epochs,
                "low_epochs": low_epochs,
                "fractions": fractions,
                "space": {k: list(v) for k, v in SPACE.items()},
                "command": "python benchmarks/fidelity_correlation.py "
                + f"--configs {args.configs} --jobs {args.jobs}",
            },
            "seconds": round(elapsed, 1),
            "table": table,
            "runs": sorted(runs, key=lambda r: (r["fraction"], r["config"])),
        },
        args.json_out,
    )


if __name__ == "__main__":
    main()
