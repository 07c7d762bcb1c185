"""cnnjax.data: input pipelines from a config block; TensorFlow loads only when one is built.

    batches = train_batches(config.data, global_batch_size=128, seed=0, start_step=step)
    for batch in prefetch_to_device(batches, NamedSharding(mesh, PartitionSpec('data'))):
        images = normalize(batch['image'], config.data.mean, config.data.std)

Sources: 'idx:<dir>', 'tfds:<name>[:<split>]', 'folder:<dir>', 'synthetic' (see config.py for every
field). Datasets by name: presets.py (`data_config("cifar10")`). Transforms: their names in
transform_names.py, their code in transforms.py. Order, sharding and resumption: tfdata.py; sources
held as arrays served from device memory without TensorFlow (data.pipeline): on_device.py.

Every name is loaded on first use, so that `cnnjax.data.device` (normalize, prefetch_to_device) imports
with JAX alone: an accelerator image without ml_collections or TensorFlow can run the training step.
"""

import importlib

_HOME = {
    "CorruptImageWarning": "pipeline",
    "DatasetInfo": "pipeline",
    "SkippedImages": "pipeline",
    "dataset_info": "pipeline",
    "device_train_batches": "pipeline",
    "eval_batches": "pipeline",
    "train_batches": "pipeline",
    "default_data_config": "config",
    "data_config": "presets",
    "normalize": "device",
    "prefetch_to_device": "device",
}

__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name in _HOME:
        return getattr(importlib.import_module(f"cnnjax.data.{_HOME[name]}"), name)
    raise AttributeError(f"module 'cnnjax.data' has no attribute {name!r}")
