"""cnnjax.ops: pure functions on jax arrays (NHWC inputs, HWIO kernels).

Convolution (cross-correlation and true convolution, 1-D and 2-D, transposed), pooling, local
response normalisation, batch normalisation (training mode, hand-written backward pass)
and the arithmetic of output sizes and receptive fields. Convolutions take
`impl='xla'` (lax.conv_general_dilated), `impl='explicit'` (from the definition, hand-written
backward pass), `impl='onednn'` or `impl='auto'` (oneDNN on the CPU where built, else XLA);
the functions default to 'xla', the layers and models to DEFAULT_IMPL ('auto'), see ops.conv.
"""

from cnnjax.ops.batch_norm import batch_norm
from cnnjax.ops.conv import (
    DEFAULT_IMPL,
    IMPLS,
    add_bias,
    conv1d,
    conv2d,
    conv_transpose2d,
    convolve1d,
    convolve2d,
    validate_conv,
)
from cnnjax.ops.lrn import local_response_norm
from cnnjax.ops.padding import (
    PADDING_STRINGS,
    Padding,
    conv_output_size,
    effective_kernel_size,
    resolve_padding,
)
from cnnjax.ops.pooling import avg_pool, global_avg_pool, max_pool
from cnnjax.ops.receptive_field import LayerGeometry, ReceptiveField, receptive_field

__all__ = [
    "DEFAULT_IMPL",
    "IMPLS",
    "PADDING_STRINGS",
    "LayerGeometry",
    "Padding",
    "ReceptiveField",
    "add_bias",
    "avg_pool",
    "batch_norm",
    "conv1d",
    "conv2d",
    "conv_output_size",
    "conv_transpose2d",
    "convolve1d",
    "convolve2d",
    "effective_kernel_size",
    "global_avg_pool",
    "local_response_norm",
    "max_pool",
    "receptive_field",
    "resolve_padding",
    "validate_conv",
]
