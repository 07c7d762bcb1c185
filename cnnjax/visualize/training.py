"""Images during training (`log_images_every_steps`, 0 = off): the first layer's filters and one
evaluation image's Grad-CAM, as PNGs in <workdir>/images/ and as TensorBoard image summaries, so a
user sees the filters form."""

from __future__ import annotations

import os
import pathlib

import jax
import numpy as np

from cnnjax.visualize import attribution, features, filters, render


def log_images(config, model, state, step: int, is_last: bool, workdir: pathlib.Path,
               writer) -> None:
    """Every config.log_images_every_steps steps and at the last: images/filters_<step>.png and
    images/gradcam_<step>.png, and the same as TensorBoard images 'filters' and 'gradcam'."""
    every = int(config.get("log_images_every_steps", 0))
    if every <= 0 or not (step % every == 0 or is_last):
        return
    from cnnjax import data
    from cnnjax.data.device import normalize

    variables = jax.device_get(state.variables())
    batch = next(iter(data.eval_batches(config.data, global_batch_size=jax.device_count())))
    image, label = np.asarray(batch["image"][0]), int(batch["label"][0])
    table = features.layers(model, image.shape)
    folder = pathlib.Path(workdir) / "images"
    folder.mkdir(exist_ok=True)
    written = {}
    first = next((t for t in table if t.kind == "Conv"), None)
    if first is not None:
        node = variables["params"]
        for part in first.name.split("/"):
            node = node[part]
        tiles = np.concatenate(filters.first_layer_tiles(np.asarray(node["kernel"]), first.groups))
        columns = 8 if tiles.shape[-1] == 3 else np.asarray(node["kernel"]).shape[2] * 8
        written["filters"] = _png(folder / f"filters_{step}.png", lambda p: render.grid_png(
            p, filters.grid(tiles, columns), f"{first.name} filters at step {step}"))
    spatial = [t for t in table if t.output_shape[0] * t.output_shape[1] > 1 and t.kind != "Pool"]
    if spatial:
        t = spatial[-1]
        x = normalize(image[None], config.data.mean, config.data.std)[0]

        def logits_and_activation(b, delta):
            logits, acts = features.apply_capturing(model, variables, b, [t.name], {t.name: delta})
            return logits.astype(np.float32), acts[t.name].astype(np.float32)

        cam = attribution.grad_cam(logits_and_activation, x, label, t.output_shape)
        heat = attribution.upsample(np.asarray(cam), image.shape[:2], t.start, t.jump)
        written["gradcam"] = _png(folder / f"gradcam_{step}.png", lambda p: render.attribution_png(
            p, image / 255.0, [(f"Grad-CAM at {t.name}", heat)],
            f"step {step}: evaluation image 0, true class {label}"))
    tb = getattr(writer, "_tb", None)  # MetricWriter's tensorboardX writer; None without TensorBoard
    if tb is not None:
        import matplotlib.image

        for tag, path in written.items():
            tb.add_image(tag, matplotlib.image.imread(path)[..., :3], step, dataformats="HWC")
        tb.flush()


def _png(path: pathlib.Path, draw) -> pathlib.Path:
    """draw(tmp) then rename: a reader never sees half a PNG."""
    tmp = path.with_name(f".{path.stem}.partial.png")  # matplotlib picks the format by suffix
    draw(tmp)
    os.replace(tmp, path)
    return path
