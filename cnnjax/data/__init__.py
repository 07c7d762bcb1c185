"""cnnjax.data: tf.data input pipelines from a config block; TensorFlow loads only when one is built.

    batches = train_batches(config.data, global_batch_size=128, seed=0, start_step=step)
    for batch in prefetch_to_device(batches, NamedSharding(mesh, PartitionSpec('data'))):
        images = normalize(batch['image'], config.data.mean, config.data.std)

Sources: 'idx:<dir>', 'tfds:<name>[:<split>]', 'folder:<dir>', 'synthetic' (see config.py for every
field). Transforms: transforms.py. Order, sharding and resumption: tfdata.py.
"""

from cnnjax.data.config import default_data_config
from cnnjax.data.pipeline import (
    CorruptImageWarning,
    DatasetInfo,
    dataset_info,
    device_train_batches,
    eval_batches,
    train_batches,
)

__all__ = [
    "CorruptImageWarning",
    "DatasetInfo",
    "dataset_info",
    "default_data_config",
    "device_train_batches",
    "eval_batches",
    "normalize",
    "prefetch_to_device",
    "train_batches",
]


def __getattr__(name: str):
    # normalize and prefetch_to_device live in cnnjax.data.device, which imports JAX: load on use.
    if name in ("normalize", "prefetch_to_device"):
        from cnnjax.data import device

        return getattr(device, name)
    raise AttributeError(f"module 'cnnjax.data' has no attribute {name!r}")
