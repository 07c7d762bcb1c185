"""Parameters and multiply-adds of every architecture at its natural input, against the papers.

    .venv/bin/python experiments/parameters/run.py [--out experiments/parameters]

Writes results.csv and results.md (the architecture table and the first-layer comparison) and
figure.png (parameters against multiply-adds, log-log). Nothing is allocated or trained: the
counts come from cnnjax.models.introspect.summarize (jax.eval_shape and a jaxpr), about 10 s on a
2-core CPU. Multiply-adds follow the papers' "FLOPs" convention (one per multiply-accumulate of a
convolution or linear layer, nothing for bias, normalisation, activation or pooling).
"""

from __future__ import annotations

import argparse
import csv
import math
import pathlib
from collections.abc import Sequence

# The variants whose names only alias another registered variant (vgg11 is VGG configuration A).
ALIASES = {"vgg11": "vgg_a", "vgg13": "vgg_b", "vgg16": "vgg_d", "vgg19": "vgg_e"}

# (parameters, multiply-adds, source) as the papers state them; None where the paper gives none.
PAPER: dict[str, tuple[float | None, float | None, str]] = {
    "lenet5": (60_000, None, "LeCun et al. 1998, Sec. II-B: 'about 60,000 trainable parameters' "
               "(partial C3 connectivity, trainable subsampling)"),
    "alexnet": (60e6, None, "Krizhevsky et al. 2012, Sec. 1: '60 million parameters'; "
                "60,965,224 with both towers (groups=2)"),
    "vgg_a": (133e6, None, "Simonyan & Zisserman 2015, Table 2"),
    "vgg_a_lrn": (133e6, None, "Simonyan & Zisserman 2015, Table 2"),
    "vgg_b": (133e6, None, "Simonyan & Zisserman 2015, Table 2"),
    "vgg_c": (134e6, None, "Simonyan & Zisserman 2015, Table 2"),
    "vgg_d": (138e6, 15.3e9, "Simonyan & Zisserman 2015, Table 2; FLOPs He et al. 2016, Sec. 4.1"),
    "vgg_e": (144e6, 19.6e9, "Simonyan & Zisserman 2015, Table 2; FLOPs He et al. 2016, Sec. 3.3"),
    "googlenet": (None, 1.5e9, "Szegedy et al. 2015, Sec. 1 ('1.5 billion multiply-adds'); "
                  "params here include the two auxiliary heads"),
    "googlenet (no aux heads)": (6.8e6, 1.5e9, "Szegedy et al. 2015, Table 1 (params column: "
                                 "no biases, no auxiliary heads) and Sec. 1"),
    "resnet18": (None, 1.8e9, "He et al. 2016, Table 1"),
    "resnet34": (None, 3.6e9, "He et al. 2016, Table 1"),
    "resnet50": (None, 3.8e9, "He et al. 2016, Table 1 (this row: stride in the 3x3, "
                 "torchvision's v1.5)"),
    "resnet50 (stride in 1x1, v1)": (None, 3.8e9, "He et al. 2016, Table 1 (the paper's layout)"),
    "resnet101": (None, 7.6e9, "He et al. 2016, Table 1"),
    "resnet152": (None, 11.3e9, "He et al. 2016, Table 1"),
    "resnet20": (0.27e6, None, "He et al. 2016, Table 6"),
    "resnet32": (0.46e6, None, "He et al. 2016, Table 6"),
    "resnet44": (0.66e6, None, "He et al. 2016, Table 6"),
    "resnet56": (0.85e6, None, "He et al. 2016, Table 6"),
    "resnet110": (1.7e6, None, "He et al. 2016, Table 6"),
    "allconv": (1.4e6, None, "Springenberg et al. 2015 (All-CNN-C)"),
}

# Extra rows: (label, registry name, knobs) for variants that the papers' numbers refer to.
EXTRA_ROWS: tuple[tuple[str, str, dict], ...] = (
    ("googlenet (no aux heads)", "googlenet", {"aux_heads": False}),
    ("resnet50 (stride in 1x1, v1)", "resnet50", {"stride_in_3x3": False}),
)

# Row order: the course's chronology, then the CIFAR-scale networks.
FAMILIES = ("lenet", "mlp", "alexnet", "vgg", "googlenet", "resnet", "plain", "allconv")

COLUMNS = ("model", "input", "params", "paper_params", "params_ratio", "macs", "paper_macs",
           "macs_ratio", "source")


def ratio(measured: float, reference: float | None) -> float | None:
    """measured / reference, or None where the paper gives no number."""
    if reference is None:
        return None
    if reference <= 0:
        raise ValueError(f"reference must be positive, got {reference}")
    return measured / reference


def conv_params(kernel: int, in_channels: int, out_channels: int, bias: bool = True) -> int:
    """Parameters of one k x k convolution: k*k*C_in*C_out weights (+ C_out biases); a single
    3x3 filter on one channel has 9, however large the image (the notes' "Parameter Sharing")."""
    for name, value in (("kernel", kernel), ("in_channels", in_channels),
                        ("out_channels", out_channels)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    return kernel * kernel * in_channels * out_channels + (out_channels if bias else 0)


def dense_params(input_shape: Sequence[int], units: int, bias: bool = True) -> int:
    """Parameters of one fully connected layer from the flattened input to `units`."""
    if units < 1 or any(d < 1 for d in input_shape):
        raise ValueError(f"input_shape entries and units must be >= 1, got {input_shape}, {units}")
    return math.prod(input_shape) * units + (units if bias else 0)


def family_order(row: dict) -> tuple[int, bool, int, str]:
    """Sort key: family (FAMILIES order), ImageNet-size before CIFAR-size, then parameters."""
    model = row["model"]
    family = next((i for i, f in enumerate(FAMILIES) if model.startswith(f)), len(FAMILIES))
    return family, row["input"].startswith("32x"), row["params"], model


def first_layer_rows() -> list[dict]:
    """Dense against convolutional first layers (weights only, then with biases)."""
    rows = [
        ("dense 224x224x3 -> 1024 units (notes)", (224, 224, 3), None, 1024, 154_140_672),
        ("dense 32x32x1 -> 512 units (notes' grayscale CIFAR)", (32, 32, 1), None, 512, 524_288),
        ("dense 32x32x1 -> 1024 units (configs/mlp_cifar_gray.py)", (32, 32, 1), None, 1024,
         None),
        ("one 3x3 filter, 1 channel", None, (3, 1, 1), None, 9),
        ("conv 3x3, 3 -> 64 (VGG's first layer)", None, (3, 3, 64), None, None),
        ("conv 5x5, 1 -> 6 (LeNet-5 C1)", None, (5, 1, 6), None, None),
        ("conv 11x11/4, 3 -> 96 (AlexNet conv1)", None, (11, 3, 96), None, None),
    ]
    out = []
    for label, shape, conv, units, expected in rows:
        if conv is not None:
            weights, total = conv_params(*conv, bias=False), conv_params(*conv)
        else:
            weights, total = dense_params(shape, units, bias=False), dense_params(shape, units)
        if expected is not None and weights != expected:
            raise AssertionError(f"{label}: {weights} weights, the notes say {expected}")
        out.append({"layer": label, "weights": weights, "weights_and_biases": total})
    return out


def architecture_rows(names: Sequence[str] | None = None) -> list[dict]:
    """One row per registered architecture (aliases left out) plus EXTRA_ROWS, each counted at
    its natural input (cnnjax.models.natural_input) with its natural class count."""
    from cnnjax import models
    from cnnjax.models import introspect

    names = [n for n in models.list_models() if n not in ALIASES] if names is None else names
    specs = [(n, n, {}) for n in names]
    specs += [extra for extra in EXTRA_ROWS if extra[1] in names]
    rows = []
    for label, name, knobs in specs:
        shape, classes = models.natural_input(name)
        summary = introspect.summarize(models.build(name, num_classes=classes, **knobs), shape)
        paper_params, paper_macs, source = PAPER.get(label, (None, None, ""))
        rows.append({"model": label, "input": "x".join(map(str, shape)),
                     "params": summary.params, "paper_params": paper_params,
                     "params_ratio": ratio(summary.params, paper_params),
                     "macs": summary.macs, "paper_macs": paper_macs,
                     "macs_ratio": ratio(summary.macs, paper_macs), "source": source})
    return sorted(rows, key=family_order)


def _fmt(value, column: str) -> str:
    if value is None:
        return "-"
    if column.endswith("ratio"):
        return f"{value:.3f}"
    if isinstance(value, float) and column.startswith("paper"):
        return f"{value / 1e9:.1f} G" if column.endswith("macs") else f"{value / 1e6:.2f} M"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """A GitHub markdown table of the rows (numbers with thousands separators)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r[c], c) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def headline(rows: Sequence[dict]) -> list[str]:
    """The notes' comparisons as sentences with the measured numbers."""
    by = {r["model"]: r for r in rows}
    lines = []
    if {"alexnet", "googlenet (no aux heads)", "googlenet"} <= by.keys():
        a, g, ga = by["alexnet"]["params"], by["googlenet (no aux heads)"]["params"], \
            by["googlenet"]["params"]
        lines.append(f"AlexNet / GoogLeNet parameters: {a / g:.1f}x at inference ({a:,} / {g:,}), "
                     f"{a / ga:.1f}x counting the auxiliary heads ({ga:,}); the paper says 12x.")
    if {"vgg_e", "resnet34"} <= by.keys():
        v, r = by["vgg_e"]["macs"], by["resnet34"]["macs"]
        lines.append(f"VGG-19 / ResNet-34 multiply-adds: {v / 1e9:.2f} G / {r / 1e9:.2f} G = "
                     f"{v / r:.1f}x (He et al.: 19.6 G / 3.6 G = 5.4x).")
    return lines


def figure(rows: Sequence[dict], path: pathlib.Path) -> None:
    """Parameters against multiply-adds, log-log, one labelled point per architecture, coloured
    by family; variants that sit on top of another point (plain nets, LRN, torchvision AlexNet,
    ResNet-50 v1) are left out of the figure, not the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    skip = ("plain", "vgg_a_lrn", "alexnet_torchvision", "resnet50 (")
    colours = dict(zip(FAMILIES, plt.get_cmap("tab10").colors, strict=False))
    fig, ax = plt.subplots(figsize=(9, 6))
    for r in rows:
        if r["model"].startswith(skip):
            continue
        family = next((f for f in FAMILIES if r["model"].startswith(f)), None)
        ax.scatter(r["macs"], r["params"], s=25, color=colours.get(family, "grey"))
        if r["model"] not in ("vgg_b", "vgg_c"):  # between vgg_a and vgg_d; labels would collide
            ax.annotate(r["model"], (r["macs"], r["params"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        if r["paper_macs"] and r["paper_params"]:
            ax.scatter(r["paper_macs"], r["paper_params"], marker="x", color="k", s=30)
    ax.scatter([], [], marker="x", color="k", label="paper (where it gives both)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("multiply-adds per image (natural input)")
    ax.set_ylabel("parameters")
    ax.set_title("cnnjax architectures: parameters vs multiply-adds")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent))
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    rows = architecture_rows()
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    first = first_layer_rows()
    text = ["# Parameters and multiply-adds (measured by experiments/parameters/run.py)", "",
            markdown_table(rows, COLUMNS[:-1]), "", "## First layers: dense against convolutional",
            "", markdown_table(first, ("layer", "weights", "weights_and_biases")), "",
            *[f"- {line}" for line in headline(rows)], ""]
    (out / "results.md").write_text("\n".join(text))
    figure(rows, out / "figure.png")
    print("\n".join(text))


if __name__ == "__main__":
    main()
