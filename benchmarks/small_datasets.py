"""Small datasets served from the device against tf.data (issue 23): training steps of the main job
(LeNet-5, configs/lenet5_mnist.py) and of smallcnn (configs/ablation_base.py's model), per
data.pipeline.

    ./launch.sh bench small_datasets [--steps 1000] [--smallcnn-steps 300] [--repeats 3]
        [--jobs lenet5,smallcnn] [--data data/mnist]

Each run is the real training loop (train_and_evaluate) in a fresh temporary workdir for N steps,
evaluating and checkpointing once at the end, on the shipped MNIST files (smallcnn too: Fashion-MNIST
has the same 28x28x1 IDX format and the same pad_or_crop transform, so its input costs the same).
"steps s" is the wall time of the training steps alone, summed over the loop's own log intervals
(train/steps_per_sec of metrics.jsonl: no compilation, evaluation or checkpoint inside), and
images/s is steps x batch / that time. The pipelines alternate within each repeat, so slow drifts of
the machine's load hit both alike; the table gives the median over repeats.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
PIPELINES = ("tfdata", "device")


def run(config_file: str, pipeline: str, steps: int, idx_dir: str) -> tuple[float, float]:
    """(seconds of the training steps, images per second) of one run of `steps` steps."""
    from cnnjax import config as config_io
    from cnnjax.train.loop import train_and_evaluate

    config = config_io.load_config(config_file)
    config.data.source = f"idx:{idx_dir}"
    config.data.pipeline = pipeline
    config.num_steps = steps
    config.log_every_steps = max(steps // 5, 1)
    config.eval_every_steps = config.checkpoint_every_steps = steps
    with tempfile.TemporaryDirectory() as workdir:
        train_and_evaluate(config, workdir)
        records = [json.loads(line) for line in
                   pathlib.Path(workdir, "metrics.jsonl").read_text().splitlines()]
    seconds, last = 0.0, 0
    for r in records:
        if "train/steps_per_sec" in r:
            seconds += (r["step"] - last) / r["train/steps_per_sec"]
            last = r["step"]
    return seconds, steps * config.batch_size / seconds


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="main job (lenet5) steps per run")
    parser.add_argument("--smallcnn-steps", type=int, default=300, help="smallcnn steps per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", default="lenet5,smallcnn", help="a subset of lenet5,smallcnn")
    parser.add_argument("--data", default=str(REPO / "data" / "mnist"),
                        help="folder of MNIST-format IDX files")
    args = parser.parse_args(argv)
    known = {"lenet5": ("main job (lenet5)", "lenet5_mnist.py", args.steps),
             "smallcnn": ("smallcnn", "ablation_base.py", args.smallcnn_steps)}
    wanted = args.jobs.split(",")
    if set(wanted) - set(known):
        parser.error(f"--jobs must be a subset of {','.join(known)}, got {args.jobs!r}")
    jobs = {known[j][0]: (str(REPO / "configs" / known[j][1]), known[j][2]) for j in wanted}
    results = {(job, p): [] for job in jobs for p in PIPELINES}
    for _ in range(args.repeats):
        for job, (config_file, steps) in jobs.items():
            for pipeline in PIPELINES:
                results[job, pipeline].append(run(config_file, pipeline, steps, args.data))
    rows = []
    print("| job | steps | pipeline | steps s (median) | images/s (median) | images/s (all) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (job, pipeline), runs in results.items():
        row = {"job": job, "steps": jobs[job][1], "pipeline": pipeline,
               "seconds": statistics.median(s for s, _ in runs),
               "images_per_sec": statistics.median(r for _, r in runs)}
        rows.append(row)
        print(f"| {job} | {row['steps']} | {pipeline} | {row['seconds']:.2f} | "
              f"{row['images_per_sec']:,.0f} | {', '.join(f'{r:,.0f}' for _, r in runs)} |")
    for job in jobs:
        by = {r["pipeline"]: r for r in rows if r["job"] == job}
        print(f"{job}: device / tfdata images/s = "
              f"{by['device']['images_per_sec'] / by['tfdata']['images_per_sec']:.2f}x")
    return rows


if __name__ == "__main__":
    main()
