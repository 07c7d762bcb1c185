"""Translation equivariance of convolution and the approximate invariance given by pooling,
measured on real images with a trained LeNet-5 (course notes, "Parameter Sharing" and "Pooling").

    .venv/bin/python experiments/equivariance/run.py --workdir workdirs/exp_lenet5_mnist/seed=0

--workdir is a finished LeNet-5 run (experiments/lenet5_mnist trains one in about 4 minutes); the
newest checkpoint is used. For every shift s = 0..max_shift pixels (averaged over the four
directions right, left, down, up; vacated pixels take the background value):

- equivariance error, ||f(shift_s x) - shift_{s/J}(f(x))|| / ||shift_{s/J}(f(x))|| away from the
  borders, for a layer whose outputs are J input pixels apart (J = 1 for C1, 2 after S2): zero up to
  float rounding for a convolution, and for the layers after a stride-2 pooling only when s is a
  multiple of 2 (their shift s/J is rounded otherwise);
- invariance change, ||f(shift_s x) - f(x)|| / ||f(x)|| with no re-alignment, for every layer from
  C1 to the logits, and the fraction of test digits whose predicted class changes.
MNIST: the first --num_digits test digits; ImageNet: --num_images sample JPEGs (224x224 centre
crops) through one 5x5 convolution with 16 random He-normal filters. About 20 s on a 2-core CPU.
Writes results.csv, results.md and figure.png beside this file (or in --out).
"""

from __future__ import annotations

import argparse
import csv
import math
import pathlib
from collections.abc import Callable, Sequence

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
# Four directions (dy, dx) per shift; errors are averaged over them.
DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0))
LAYERS = ("c1", "s2", "c3", "s4", "c5", "f6", "output")
# Input pixels between neighbouring outputs of each LeNet-5 layer (32x32 input, VALID convs).
JUMPS = {"c1": 1, "s2": 2, "c3": 2}


def shift_image(x: np.ndarray, dy: int, dx: int, fill: float = 0.0) -> np.ndarray:
    """x (N, H, W, C) translated by dy rows and dx columns (positive: down / right); the vacated
    rows and columns take `fill`. Output (N, H, W, C)."""
    if x.ndim != 4:
        raise ValueError(f"x must be (N, H, W, C), got shape {x.shape}")
    h, w = x.shape[1:3]
    if abs(dy) >= h or abs(dx) >= w:
        raise ValueError(f"shift ({dy}, {dx}) must be smaller than the image ({h}, {w})")
    out = np.full_like(x, fill)
    src_y = slice(max(-dy, 0), h - max(dy, 0))
    src_x = slice(max(-dx, 0), w - max(dx, 0))
    dst_y = slice(max(dy, 0), h - max(-dy, 0))
    dst_x = slice(max(dx, 0), w - max(-dx, 0))
    out[:, dst_y, dst_x] = x[:, src_y, src_x]
    return out


def crop(x: np.ndarray, margin: int) -> np.ndarray:
    """x (N, H, W, C) without `margin` rows and columns on every side: (N, H-2m, W-2m, C)."""
    if margin < 0 or 2 * margin >= min(x.shape[1], x.shape[2]):
        raise ValueError(f"margin must be in [0, {min(x.shape[1:3]) // 2}), got {margin}")
    return x[:, margin:x.shape[1] - margin, margin:x.shape[2] - margin]


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / ||b|| over all entries (Frobenius norms, in float64)."""
    if a.shape != b.shape:
        raise ValueError(f"a and b must have one shape, got {a.shape} and {b.shape}")
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), np.finfo(np.float64).tiny))


def equivariance_error(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, shift: int,
                       jump: int = 1, margin: int = 0, fill: float = 0.0) -> float:
    """Mean over DIRECTIONS of relative_error(f(shift x), shift(f x)) away from the borders.

    The output is shifted by round(shift / jump) of its own pixels; `margin` output pixels plus
    that shift are cropped on every side, so vacated pixels and border effects are not compared.
    """
    fx = np.asarray(f(x))
    out_shift = round(shift / jump)
    errors = []
    for dy, dx in DIRECTIONS:
        moved = np.asarray(f(shift_image(x, dy * shift, dx * shift, fill)))
        expected = shift_image(fx, dy * out_shift, dx * out_shift)
        m = margin + out_shift
        errors.append(relative_error(crop(moved, m), crop(expected, m)))
    return float(np.mean(errors))


def invariance_change(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, shift: int,
                      fill: float = 0.0) -> float:
    """Mean over DIRECTIONS of relative_error(f(shift x), f(x)): how much the representation
    moves under the shift when nothing re-aligns it (0 would be exact invariance)."""
    fx = np.asarray(f(x))
    return float(np.mean([relative_error(np.asarray(f(shift_image(x, dy * shift, dx * shift,
                                                                   fill))), fx)
                          for dy, dx in DIRECTIONS]))


def changed_fraction(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                     shift: int, fill: float = 0.0) -> float:
    """Mean over DIRECTIONS of the fraction of images whose predicted class changes."""
    base = predict(x)
    return float(np.mean([np.mean(predict(shift_image(x, dy * shift, dx * shift, fill)) != base)
                          for dy, dx in DIRECTIONS]))


# ------------------------------------------------------------------------------- inputs ---

def mnist_digits(count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` MNIST test digits in [0, 1], zero-padded 28x28 -> 32x32 (the main job's
    'mnist' transform before normalisation): images (count, 32, 32, 1), labels (count,)."""
    from cnnjax.data.sources import load_idx

    source = load_idx(str(REPO / "data" / "mnist"), "test")
    images = np.asarray(source.images[:count], np.float32) / 255.0
    images = np.pad(images.reshape(-1, 28, 28, 1), ((0, 0), (2, 2), (2, 2), (0, 0)))
    return images, np.asarray(source.labels[:count])


def imagenet_images(folder: pathlib.Path, count: int, size: int = 224) -> np.ndarray:
    """`count` sample JPEGs (labels.csv order) as size x size centre crops in [0, 1]:
    (count, size, size, 3)."""
    from PIL import Image, ImageOps

    rows = (folder / "labels.csv").read_text().splitlines()[1:count + 1]
    images = []
    for row in rows:
        with Image.open(folder / row.split(",")[0]) as image:
            images.append(np.asarray(ImageOps.fit(image.convert("RGB"), (size, size)), np.float32))
    return np.stack(images) / 255.0


def lenet_layers(workdir: pathlib.Path):
    """(layer name -> f(raw 32x32 images in [0, 1]) -> that layer's output, predict) for the
    newest checkpoint in `workdir`; the run's normalisation is applied inside."""
    import jax
    import jax.numpy as jnp

    from cnnjax import evaluate
    from cnnjax.train.loop import build_model

    run = evaluate.open_run(workdir)
    params = run.checkpoints.read_arrays(run.steps[-1])["params"]
    model = build_model(run.config, int(run.config.data.num_classes))
    mean = np.asarray(run.config.data.mean, np.float32)
    std = np.asarray(run.config.data.std, np.float32)

    @jax.jit
    def forward(x):
        _, state = model.apply({"params": params}, (x - mean) / std, train=False,
                               capture_intermediates=True)
        inner = state["intermediates"]
        return {name: jnp.asarray(inner[name]["__call__"][0]) for name in LAYERS}

    cache: dict = {}

    def outputs(x: np.ndarray) -> dict:
        # Every layer is measured on the same shifted batches: run each batch once.
        key = hash(x.tobytes())
        if key not in cache:
            cache[key] = jax.tree.map(np.asarray, forward(x))
        return cache[key]

    layers = {name: (lambda x, name=name: outputs(x)[name]) for name in LAYERS}
    return layers, lambda x: np.argmax(outputs(x)["output"], axis=-1), run.steps[-1]


def random_conv(seed: int = 0, kernel: int = 5, features: int = 16):
    """f(images (N, H, W, 3)) -> VALID 5x5 convolution with He-normal random filters (plus zero
    bias): (N, H-4, W-4, features)."""
    import jax

    from cnnjax import ops

    w = jax.random.normal(jax.random.key(seed), (kernel, kernel, 3, features))
    w = w * math.sqrt(2.0 / (kernel * kernel * 3))
    return jax.jit(lambda x: ops.conv2d(x, w, padding="VALID"))


# -------------------------------------------------------------------------------- main ---

def measure(workdir: pathlib.Path, max_shift: int, num_digits: int, imagenet: pathlib.Path | None,
            num_images: int) -> tuple[list[dict], int]:
    """One row per shift: equivariance errors, invariance changes per layer, predictions."""
    layers, predict, step = lenet_layers(workdir)
    digits, labels = mnist_digits(num_digits)
    conv = random_conv()
    photos = imagenet_images(imagenet, num_images) if imagenet else None
    rows = []
    for s in range(max_shift + 1):
        row = {"shift": s}
        for name, jump in JUMPS.items():
            row[f"equivariance {name} (MNIST)"] = equivariance_error(layers[name], digits, s, jump)
        if photos is not None:
            row["equivariance conv5x5 random (ImageNet)"] = equivariance_error(conv, photos, s)
        for name in LAYERS:
            row[f"change {name}"] = invariance_change(layers[name], digits, s)
        row["predictions changed"] = changed_fraction(predict, digits, s)
        row["accuracy"] = float(np.mean([np.mean(predict(shift_image(digits, dy * s, dx * s))
                                                 == labels) for dy, dx in DIRECTIONS]))
        rows.append(row)
        print(", ".join(f"{k} {v:.3g}" for k, v in row.items()))
    return rows, step


def figure(rows: Sequence[dict], path: pathlib.Path) -> None:
    """Three panels against shift: equivariance error, invariance change per layer,
    predictions changed and accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shifts = [r["shift"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    for i, key in enumerate(k for k in rows[0] if k.startswith("equivariance")):
        # Offsets keep overlapping zero curves visible; the values are exactly 0 or not.
        axes[0].plot(shifts, [r[key] + 0.01 * i for r in rows], marker="o",
                     label=key.removeprefix("equivariance ") + (f" (+{0.01 * i:.2f})" if i else ""))
    axes[0].set_title("equivariance: f(shift x) vs shift(f x), re-aligned")
    axes[0].set_ylabel("relative error")
    for name in LAYERS:
        axes[1].plot(shifts, [r[f"change {name}"] for r in rows], marker="o", label=name)
    axes[1].set_title("invariance: f(shift x) vs f(x), not re-aligned")
    axes[1].set_ylabel("relative change")
    axes[2].plot(shifts, [r["predictions changed"] for r in rows], marker="o",
                 label="predictions changed")
    axes[2].plot(shifts, [1 - r["accuracy"] for r in rows], marker="s", label="test error")
    axes[2].set_title("trained LeNet-5 on shifted MNIST test digits")
    axes[2].set_ylabel("fraction of digits")
    for ax in axes:
        ax.set_xlabel("shift (pixels, mean of 4 directions)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a finished LeNet-5 MNIST run")
    parser.add_argument("--max_shift", type=int, default=6)
    parser.add_argument("--num_digits", type=int, default=1000)
    parser.add_argument("--imagenet", default=str(REPO.parent / "shared" / "data" /
                                                  "imagenet_sample"))
    parser.add_argument("--num_images", type=int, default=32)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent))
    args = parser.parse_args(argv)
    imagenet = pathlib.Path(args.imagenet)
    rows, step = measure(pathlib.Path(args.workdir), args.max_shift, args.num_digits,
                         imagenet if (imagenet / "labels.csv").is_file() else None,
                         args.num_images)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    columns = list(rows[0])
    lines = [f"# Equivariance and invariance ({args.workdir}, step {step})", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(f"{r[c]:.3g}" for c in columns) + " |" for r in rows]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    figure(rows, out / "figure.png")


if __name__ == "__main__":
    main()
