"""experiments/lenet5_mnist/config.py: the main job's config over three seeds."""

from __future__ import annotations

import pathlib

from cnnjax import config as config_io

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_config_is_the_main_job_at_12_epochs(experiment_module):
    ours = experiment_module("lenet5_mnist/config.py").get_config()
    main = config_io.load_config(str(REPO / "configs" / "lenet5_mnist.py"))
    main.num_epochs = 12.0  # the measured results are from 12 epochs; the main job now runs 10
    main.model.conv_impl = "xla"  # ... and on XLA's convolution; the main job now picks oneDNN
    main.xla_cpu_conv = "ynnpack"  # ... which ran on YNNPACK then; the main job now uses Eigen
    main.data.pipeline = "tfdata"  # ... and read through tf.data; the main job now reads from the device
    assert ours.to_dict() == main.to_dict()


def test_sweep_is_three_seeds_that_resolve(sweep_configs):
    resolved = sweep_configs("lenet5_mnist")
    assert [p for p, _ in resolved] == [{"seed": 0}, {"seed": 1}, {"seed": 2}]
    assert [c.seed for _, c in resolved] == [0, 1, 2]
    assert {(c.model.name, c.num_epochs, c.data.source) for _, c in resolved} == {
        ("lenet5", 12.0, "idx:data/mnist")}


def test_smoke_points_run_thirty_steps(sweep_configs):
    assert {c.num_steps for _, c in sweep_configs("lenet5_mnist", "smoke")} == {30}
