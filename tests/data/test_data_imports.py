"""cnnjax.data keeps TensorFlow out of processes that only import it (the models, the device side)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_importing_cnnjax_data_and_its_device_module_does_not_import_tensorflow():
    code = ("import sys, cnnjax.data, cnnjax.data.device, cnnjax.data.config\n"
            "import cnnjax.data.presets, cnnjax.data.transform_names\n"
            "from cnnjax.data import train_batches, eval_batches, dataset_info, normalize\n"
            "info = dataset_info(cnnjax.data.default_data_config(), 'test')  # idx: numpy only\n"
            "assert info.num_examples == 10000, info\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', "
            "'tensorflow_datasets')))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
