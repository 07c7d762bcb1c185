"""Receptive-field growth of stacked 3x3 convolutions with dilation 1, constant dilation 2, and
exponentially growing dilation 1, 2, 4, 8, ... (Yu & Koltun 2016) at equal parameters.

    .venv/bin/python experiments/dilation/run.py [--layers 6] [--out experiments/dilation]

The field sizes come from cnnjax.ops.receptive_field (stride 1, no padding). Every stack has the
same parameters, 9 C_in C_out per layer; dilation changes where the taps sit, not how many there
are. Besides the field's extent the script computes its coverage: the fraction of input pixels
inside the field that actually reach the output (the support of the stacked taps, per axis). With
a constant dilation of 2 every tap lands on an even offset, so half the pixels per axis (a quarter
in 2-D) are never seen ("gridding"); exponential dilation covers the field densely. Writes
results.csv, results.md and figure.png; under a second on a CPU.
"""

from __future__ import annotations

import argparse
import csv
import pathlib
from collections.abc import Sequence

SCHEMES = ("dilation 1", "dilation 2", "dilation 2^l (1, 2, 4, ...)")


def dilations(scheme: str, layers: int) -> list[int]:
    """The dilation of each of `layers` layers under `scheme` (one of SCHEMES)."""
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    if scheme == SCHEMES[0]:
        return [1] * layers
    if scheme == SCHEMES[1]:
        return [2] * layers
    if scheme == SCHEMES[2]:
        return [2 ** i for i in range(layers)]
    raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}; got {scheme!r}")


def field_sizes(dils: Sequence[int], kernel: int = 3) -> list[int]:
    """Receptive-field size (pixels per axis) after each stride-1 layer with these dilations."""
    from cnnjax.ops import LayerGeometry, receptive_field

    return [f.size for f in receptive_field([LayerGeometry(kernel, 1, d) for d in dils])]


def support(dils: Sequence[int], kernel: int = 3) -> set[int]:
    """Offsets (per axis, from the field's first pixel) of the input pixels that reach one
    output through the stacked taps: the Minkowski sum of {0, d, ..., (k-1) d} over layers."""
    offsets = {0}
    for d in dils:
        offsets = {o + d * t for o in offsets for t in range(kernel)}
    return offsets


def coverage(dils: Sequence[int], kernel: int = 3) -> float:
    """Fraction of the field's pixels (per axis) that reach the output; square it for 2-D."""
    size = field_sizes(dils, kernel)[-1]
    return len(support(dils, kernel)) / size


def rows(layers: int) -> list[dict]:
    """One row per (scheme, depth): field size, coverage per axis and in 2-D, parameters per
    channel pair of the stack, and of one dense kernel with the same field."""
    out = []
    for scheme in SCHEMES:
        for depth in range(1, layers + 1):
            dils = dilations(scheme, depth)
            size = field_sizes(dils)[-1]
            cov = coverage(dils)
            out.append({"scheme": scheme, "layers": depth, "dilations": "-".join(map(str, dils)),
                        "field": size, "coverage_1d": round(cov, 4), "coverage_2d": round(cov**2, 4),
                        "weights_per_channel_pair": 9 * depth,
                        "single_kernel_weights_same_field": size * size})
    return out


def figure(table: Sequence[dict], path: pathlib.Path) -> None:
    """Field size (log2) and 2-D coverage against depth, one line per scheme."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.5))
    for scheme in SCHEMES:
        part = [r for r in table if r["scheme"] == scheme]
        depth = [r["layers"] for r in part]
        ax.plot(depth, [r["field"] for r in part], marker="o", label=scheme)
        bx.plot(depth, [r["coverage_2d"] for r in part], marker="o", label=scheme)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("3x3 layers (equal parameters at equal depth)")
    ax.set_ylabel("receptive field (pixels per side)")
    ax.set_title("receptive field against depth")
    bx.set_xlabel("3x3 layers")
    bx.set_ylabel("fraction of the field's pixels that reach the output (2-D)")
    bx.set_title("coverage: constant dilation leaves holes (gridding)")
    bx.set_ylim(0, 1.05)
    for a in (ax, bx):
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent))
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = rows(args.layers)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    columns = list(table[0])
    lines = ["# Receptive field of stacked 3x3 convolutions (experiments/dilation/run.py)", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in table]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    figure(table, out / "figure.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
