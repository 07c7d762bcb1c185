"""ERF of each stage at initialisation and after training, against the theoretical receptive field
(Luo et al. 2016), for trained runs: support, 95%-mass diameter and RMS radius of the ERF.

    .venv/bin/python experiments/feature_hierarchy/run.py workdirs/fh_lenet5:c1,s2,c3,s4,c5 \\
        workdirs/fh_resnet20:conv1,layer1_2,layer2_2,layer3_2 [--images 32]

Writes results.csv (one row per model and layer) and figure.png (95%-mass diameter and RMS radius
over the theoretical field, initialisation against trained) beside this file. The initial parameters are a
fresh init of the same model with the run's seed (what step 0 of the run started from).
"""

from __future__ import annotations

import argparse
import csv
import os
import pathlib

import jax
import numpy as np

from cnnjax import data
from cnnjax.visualize import erf, features
from cnnjax.visualize.cli import load

HERE = pathlib.Path(__file__).resolve().parent


def erf_rows(workdir: str, layer_names: list[str], count: int) -> list[dict]:
    args = argparse.Namespace(weights=None, workdir=workdir, data=None, step="latest", model=None,
                              config=None)
    loaded = load(args, [])
    config, model = loaded.config, loaded.model
    from cnnjax.data.device import normalize

    batch = next(iter(data.eval_batches(config.data, global_batch_size=count)))
    x = normalize(batch["image"][:count], config.data.mean, config.data.std)
    initial = jax.device_get(model.init({"params": jax.random.key(config.seed)}, x[:1], train=False))
    table = {t.name: t for t in features.layers(model, x.shape[1:])}
    rows = []
    for name in layer_names:
        t = table[name]
        centre = t.centre(t.output_shape[0] // 2, t.output_shape[1] // 2)
        row = {"model": config.model.name, "layer": name, "theoretical_rf": t.field[0]}
        for when, variables in (("init", initial), ("trained", loaded.variables)):
            m = np.asarray(erf.erf_map(
                lambda b, v=variables, n=name: features.feature_maps(model, v, b, [n])[n], x))
            numbers = erf.erf_numbers(m, centre, t.field)
            row[f"support_{when}"] = numbers["erf_support"][0]
            row[f"d95_{when}"] = numbers["erf_d95"]
            row[f"d95_over_rf_{when}"] = round(numbers["erf_d95_over_rf"], 3)
            row[f"sigma_over_rf_{when}"] = round(rms_radius(m, centre) / t.field[0], 3)
        rows.append(row)
        print(row, flush=True)
    return rows


def rms_radius(m: np.ndarray, centre: tuple[float, float]) -> float:
    """Root-mean-square distance from the centre along one axis, weighted by the ERF: a uniform
    field of side R gives R / sqrt(12) = 0.289 R; a centre-heavy (Gaussian-like) one less."""
    ys, xs = np.indices(m.shape)
    spread = (m * ((ys - centre[0]) ** 2 + (xs - centre[1]) ** 2)).sum() / (2 * m.sum())
    return float(np.sqrt(spread))


def figure(rows: list[dict], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        mine = [r for r in rows if r["model"] == model]
        labels = [f"{r['layer']}\nRF {r['theoretical_rf']}" for r in mine]
        for metric, style in (("d95", "-"), ("sigma", ":")):
            for when, marker in (("init", "o"), ("trained", "s")):
                ax.plot(labels, [r[f"{metric}_over_rf_{when}"] for r in mine], linestyle=style,
                        marker=marker, label=f"{metric} / RF, {when}")
        ax.axhline(1 / np.sqrt(12), color="grey", linewidth=0.8, label="sigma of a uniform field")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("fraction of the theoretical RF")
        ax.set_title(model)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", help="WORKDIR:LAYER,LAYER,...")
    parser.add_argument("--images", type=int, default=32)
    args = parser.parse_args()
    rows = []
    for spec in args.runs:
        workdir, _, layers = spec.partition(":")
        rows += erf_rows(workdir, layers.split(","), args.images)
    tmp = HERE / ".results.csv.partial"
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, HERE / "results.csv")
    figure(rows, HERE / "figure.png")


if __name__ == "__main__":
    main()
