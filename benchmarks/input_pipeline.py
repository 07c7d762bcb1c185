"""Input-pipeline throughput: cnnjax.data's tf.data transforms against a plain PIL + numpy loop.

    .venv/bin/python benchmarks/input_pipeline.py [--data ../shared/data/imagenet_sample]

Runs, in one process and one after the other on the same JPEG folder (ImageNet layout or labels.csv):
  PIL loop        single thread: read, decode, resize shorter side 256, random 224 crop, random flip
  PIL 10-crop     single thread: read, decode, resize shorter side 256, 4 corners + center, flipped
  alexnet         cnnjax train_batches, transform 'alexnet' (the PIL loop's work plus PCA lighting)
  inception       cnnjax train_batches, transform 'inception' (fused decode-and-crop, resize, flip)
  10-crop eval    cnnjax eval_batches, transform 'center_crop' with crops=10
  ..., any order  the two training transforms with data.deterministic=False

Target: 7,000 img/s per GPU (ResNet-50, bf16, one H100) from a 16-core host share is
7000 / 16 = 438 images/s per core (--target-img-s, --host-cores); the last column compares each
per-core rate with it. "images/s" is what all the cores this process could use delivered.

Per-core throughput is images per CPU-second of the whole process (time.process_time counts every
thread), i.e. images/s divided by the cores the pipeline kept busy (CPU-seconds / wall-seconds). It
is the fair comparison between one PIL thread and tf.data's thread pool, and it holds up when other
processes share the machine. Timing starts after the first batch (graph building, file listing).
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import pathlib
import time

import numpy as np
from PIL import Image

import cnnjax.data as D
from cnnjax.data import sources

REPO = pathlib.Path(__file__).resolve().parents[1]


def pil_decode_resize(path: str, size: int) -> np.ndarray:
    """Read and decode one file, resize its shorter side to `size` (PIL bilinear), as uint8 HWC."""
    with open(path, "rb") as f:
        image = Image.open(io.BytesIO(f.read())).convert("RGB")
    w, h = image.size
    scale = size / min(w, h)
    image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                         Image.BILINEAR)
    return np.asarray(image)


def pil_train(paths: list[str], rng: np.random.Generator) -> np.ndarray:
    """The reference loop: decode, resize 256, random 224 crop, random flip; stacked as a batch."""
    out = []
    for path in paths:
        image = pil_decode_resize(path, 256)
        y = rng.integers(0, image.shape[0] - 224 + 1)
        x = rng.integers(0, image.shape[1] - 224 + 1)
        crop = image[y:y + 224, x:x + 224]
        out.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
    return np.stack(out)


def pil_ten_crop(paths: list[str]) -> np.ndarray:
    """Decode, resize 256, five 224 crops (corners, center) and their mirror images: (B, 10, ...)."""
    out = []
    for path in paths:
        image = pil_decode_resize(path, 256)
        h, w = image.shape[:2]
        corners = [(0, 0), (0, w - 224), (h - 224, 0), (h - 224, w - 224),
                   ((h - 224) // 2, (w - 224) // 2)]
        five = [image[y:y + 224, x:x + 224] for y, x in corners]
        out.append(np.stack(five + [c[:, ::-1] for c in five]))
    return np.stack(out)


def measure(batches, images: int, warmup: int = 4) -> dict[str, float]:
    """Pull batches until `images` images have come out; wall and process CPU seconds.

    The first `warmup` batches are not timed: they include building the pipeline and drain the
    batches it prefetched meanwhile.
    """
    first = next(batches)
    per_batch = len(first["image"])
    for _ in itertools.islice(batches, warmup - 1):
        pass
    wall, cpu = time.perf_counter(), time.process_time()
    n = 0
    for batch in itertools.islice(batches, max(images // per_batch, 1)):
        n += int(batch["mask"].sum()) if "mask" in batch else len(batch["image"])
    result = {"images": n, "wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
    batches.close()  # stops tf.data's prefetching threads before the next measurement
    return result


def pil_batches(fn, paths: list[str], batch_size: int):
    for start in itertools.count(0, batch_size):
        chunk = [paths[(start + k) % len(paths)] for k in range(batch_size)]
        yield {"image": fn(chunk)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared/data/imagenet_sample"),
                        help="JPEG folder (ImageNet layout or labels.csv)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=1024, help="images timed per pipeline")
    parser.add_argument("--pil-images", type=int, default=512, help="images timed per PIL loop")
    parser.add_argument("--num-parallel-calls", type=int, default=-1, help="-1 = AUTOTUNE")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported")
    parser.add_argument("--target-img-s", type=float, default=7000.0,
                        help="images/s one accelerator needs (ResNet-50 bf16 on an H100: 7,000)")
    parser.add_argument("--host-cores", type=int, default=16, help="host cores per accelerator")
    args = parser.parse_args(argv)

    data = D.default_data_config()
    data.source = f"folder:{args.data}"
    data.eval_split = data.train_split  # the 10-crop pass reads the same (flat) folder
    data.channels, data.image_size, data.resize_size = 3, 224, 256
    data.mean, data.std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    data.eval_transform = "center_crop"
    data.num_parallel_calls = args.num_parallel_calls
    host = dict(process_index=0, process_count=1)
    paths = list(sources.load_source(sources.train_spec(data), data).paths)
    rng = np.random.default_rng(0)
    for path in paths:  # read every file once so all runs start from the page cache
        pathlib.Path(path).read_bytes()

    def ten_crop_passes():
        while True:
            yield from D.eval_batches(data, global_batch_size=16, crops=10, **host)

    def train(name, deterministic=True):
        data.train_transform = name
        data.deterministic = deterministic
        return D.train_batches(data, global_batch_size=args.batch_size, seed=0, **host)

    pil_name = "PIL loop (decode, resize 256, crop 224, flip)"
    runs = {
        pil_name: lambda: measure(pil_batches(lambda c: pil_train(c, rng), paths, args.batch_size),
                                  args.pil_images),
        "PIL 10-crop": lambda: measure(pil_batches(pil_ten_crop, paths, 16), args.pil_images // 2),
        "cnnjax alexnet (train)": lambda: measure(train("alexnet"), args.images),
        "cnnjax inception (train)": lambda: measure(train("inception"), args.images),
        "cnnjax alexnet, any order": lambda: measure(train("alexnet", False), args.images),
        "cnnjax inception, any order": lambda: measure(train("inception", False), args.images),
        "cnnjax 10-crop eval": lambda: measure(ten_crop_passes(), args.images // 2),
    }
    # Rounds interleave the pipelines so that load from other processes hits them alike; each row
    # reports the round with the median per-core rate.
    results = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            results[name].append(run())
    rows = {name: sorted(rs, key=lambda r: r["images"] / r["cpu"])[len(rs) // 2]
            for name, rs in results.items()}

    reference = {"train": pil_name, "eval": "PIL 10-crop"}
    print(f"{len(paths)} files in {args.data}; {len(os.sched_getaffinity(0))} cores available; "
          f"batch {args.batch_size}; median of {args.rounds} rounds")
    need = args.target_img_s / args.host_cores
    print(f"target: {args.target_img_s:,.0f} img/s per accelerator from {args.host_cores} cores = "
          f"{need:.0f} img/s per core")
    print("| pipeline | images | wall s | images/s | cores used | images/s per core | "
          "per core vs PIL | per core vs target |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows.items():
        per_core = r["images"] / r["cpu"]
        ref = rows[reference["eval" if "10-crop" in name else "train"]]
        ratio = per_core / (ref["images"] / ref["cpu"])
        print(f"| {name} | {r['images']} | {r['wall']:.2f} | {r['images'] / r['wall']:.0f} | "
              f"{r['cpu'] / r['wall']:.2f} | {per_core:.0f} | {ratio:.2f}x | {per_core / need:.2f}x |")


if __name__ == "__main__":
    main()
