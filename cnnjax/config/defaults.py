"""The default config every config file starts from; each field is documented where it is set.

Config files override what their paper specifies: `config = default_config(); config.model.name = ...`.
"""

from __future__ import annotations

import ml_collections

from cnnjax.data.config import default_data_config  # no TensorFlow import

# config.xla_cpu_conv -> the value of XLA's CPU convolution flag it sets (None: the flag is not set);
# cnnjax.train.environment applies it, the config checks accept its keys.
XLA_CPU_CONVS = {"eigen": "-individual_convolution", "ynnpack": None}
DEFAULT_XLA_CPU_CONV = "eigen"


def default_config() -> ml_collections.ConfigDict:
    """All the keys a training run reads, with neutral defaults."""
    c = ml_collections.ConfigDict()
    c.seed = 0                         # parameters, data order, augmentation and dropout all follow it
    # Where XLA:CPU runs convolutions (CPU runs only; set in XLA_FLAGS before JAX starts, see
    # cnnjax/train/environment.py): 'eigen' (the faster, benchmarks/README.md "XLA:CPU flags") or
    # 'ynnpack' (jaxlib's default, what the results recorded before 'eigen' existed had).
    c.xla_cpu_conv = DEFAULT_XLA_CPU_CONV

    c.model = ml_collections.ConfigDict()
    c.model.name = "lenet5"            # a name from cnnjax.models.list_models()
    c.model.dtype = "float32"          # compute dtype: 'float32' or 'bfloat16' (parameters stay float32)
    # Further keys of c.model are passed to cnnjax.models.build as knobs (activation, norm, pool, ...).

    c.data = default_data_config()     # source, splits, transforms, mean/std, num_classes (cnnjax.data)

    c.batch_size = 128                 # global batch, split across every device of every host
    c.eval_batch_size = 500            # padded up to a multiple of the devices (padding is masked out)
    c.eval_cache_gb = 8.0              # keep the decoded evaluation set in host memory across
    #                                    evaluations up to this size (and half the RAM); 0 = decode each time
    c.num_steps = -1                   # > 0: train this many steps; otherwise num_epochs is used
    c.num_epochs = 10.0

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "sgd"           # sgd | nesterov | adamw | rmsprop
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 0.0
    c.optimizer.decay_mask = "no_bias_norm"  # all | no_bias_norm (no decay on biases and norm params)
    c.optimizer.clip_grad_norm = 0.0   # > 0: clip the global gradient norm
    c.optimizer.b1 = 0.9               # adamw
    c.optimizer.b2 = 0.999             # adamw
    c.optimizer.eps = 1e-8             # adamw, rmsprop
    c.optimizer.rms_decay = 0.9        # rmsprop

    c.schedule = ml_collections.ConfigDict()
    c.schedule.name = "constant"       # constant | piecewise | cosine | exponential | plateau
    c.schedule.unit = "epochs"         # unit of warmup, boundaries and decay_every: epochs | steps
    c.schedule.base_lr = 0.01
    c.schedule.warmup = 0.0            # linear warm-up from 0
    c.schedule.boundaries = ()         # piecewise: where the rate is multiplied by decay_factor
    c.schedule.decay_factor = 0.1      # piecewise, exponential, plateau
    c.schedule.decay_every = 1.0       # exponential (staircase)
    c.schedule.patience = 1            # plateau: evaluations without improvement before decaying
    c.schedule.rtol = 1e-4             # plateau: relative improvement that counts

    c.loss = ml_collections.ConfigDict()
    c.loss.label_smoothing = 0.0
    c.loss.aux_weight = 0.3            # GoogLeNet's auxiliary classifiers (Szegedy et al. 2015, Sec. 5)

    c.log_every_steps = 100
    c.eval_every_steps = 1000          # also at the end of training
    c.checkpoint_every_steps = 1000    # also at the end, and on SIGTERM
    c.log_images_every_steps = 0       # >0: filters and a Grad-CAM to TensorBoard and images/
    c.keep_checkpoints = 3             # the latest K ...
    c.keep_best = 1                    # ... and the best by best_metric
    c.best_metric = "eval/top1"
    c.best_mode = "max"
    c.async_checkpoints = True
    c.restart_if_damaged = False       # true: start from step 0 when every checkpoint is damaged
    c.init_weights = ""                # a weights file to start from; ignored on resume (the checkpoint wins)
    return c
