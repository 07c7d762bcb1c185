"""The work of one `visualize` command once its arguments are checked: forward passes, gradients and
a pass over the evaluation split, drawn into a folder (the caller publishes it)."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import pathlib
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax.visualize import attribution, erf, features, filters, patches, render


def _file_name(layer: str) -> str:
    return layer.replace("/", "-")


def _rf(t: features.Layer) -> str:
    return f"{t.field[0]}x{t.field[1]}"


@dataclasses.dataclass
class Job:
    args: argparse.Namespace
    loaded: object                 # cli.Loaded
    images: list[np.ndarray]       # uint8 (H, W, C) from --image
    table: list[features.Layer]
    chosen: list[features.Layer]
    deeper: list[features.Layer]
    cam_layer: features.Layer
    patch_layers: list[features.Layer]
    out: pathlib.Path

    def __post_init__(self):
        from cnnjax.data.device import normalize

        data = self.loaded.config.data
        self.model, self.variables = self.loaded.model, self.loaded.variables
        self.normalize = lambda u8: normalize(jnp.asarray(u8), data.mean, data.std, jnp.float32)
        self.sections: list[tuple[str, list[tuple[str, str]]]] = []
        self.record: dict = {"source": self.loaded.label, "input_shape": list(self.shape),
                             "layers": [], "images": [], "top_patches": {}}

    @property
    def shape(self) -> tuple[int, ...]:
        data = self.loaded.config.data
        if self.images:
            return tuple(self.images[0].shape)
        return (int(data.image_size),) * 2 + (int(data.channels),)

    # ------------------------------------------------------------------------------ helpers ---
    @functools.cached_property
    def _apply(self):
        model = self.model

        @functools.partial(jax.jit, static_argnums=2)
        def apply(variables, x, names):
            return features.apply_capturing(model, variables, x, names)

        return apply

    def forward(self, x: jax.Array, names: tuple[str, ...] = ()):
        return self._apply(self.variables, x, tuple(names))

    def eval_images(self, limit: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(uint8 images, labels) batch by batch: the first `limit` (0: all) examples of the
        evaluation split."""
        from cnnjax import data

        return take(data.eval_batches(self.loaded.config.data,
                                      global_batch_size=self.args.batch_size), limit)

    def figure(self, section: str, png: str, caption: str) -> None:
        for heading, figures in self.sections:
            if heading == section:
                figures.append((png, caption))
                return
        self.sections.append((section, [(png, caption)]))

    # ---------------------------------------------------------------------------------- run ---
    def run(self) -> None:
        labels: list[int | None] = [None] * len(self.images)
        images = list(self.images)
        if not images:
            for batch, batch_labels in self.eval_images(2):
                images += list(batch)
                labels += [int(v) for v in batch_labels]
        self.draw_filters()
        self.draw_feature_maps(images[0])
        self.draw_erf(images)
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            self.draw_attribution(i, image, label)
        if self.loaded.has_data:
            self.draw_patches()
        (self.out / "visualize.json").write_text(_json(self.record))
        (self.out / "index.html").write_text(render.index_html(
            f"visualize: {self.loaded.label}", self.sections))

    def _kernel(self, layer: features.Layer) -> np.ndarray:
        node = self.variables["params"]
        for part in layer.name.split("/"):
            node = node[part]
        return np.asarray(node["kernel"])

    def draw_filters(self) -> None:
        first = next((t for t in self.table if t.kind == "Conv"), None)
        if first is None:
            return
        kernel = self._kernel(first)
        groups = filters.first_layer_tiles(kernel, first.groups)
        colour = "RGB" if kernel.shape[2] == 3 else "grayscale, one tile per input channel"
        for g, tiles in enumerate(groups):
            columns = 8 if kernel.shape[2] == 3 else kernel.shape[2] * max(1, 8 // kernel.shape[2])
            png = f"filters_{_file_name(first.name)}" + (f"_group{g}" if len(groups) > 1 else "") + ".png"
            title = (f"{first.name}: {kernel.shape[3] // first.groups} filters "
                     f"{kernel.shape[0]}x{kernel.shape[1]}x{kernel.shape[2]}"
                     + (f", group {g + 1} of {len(groups)}" if len(groups) > 1 else ""))
            render.grid_png(self.out / png, filters.grid(tiles, columns), title)
            self.figure("Filters", png, f"{title} ({colour}); each filter stretched to [0, 1] by its "
                        "own minimum and maximum")
        for layer in self.deeper:
            kernel = self._kernel(layer)
            per_group = kernel.shape[3] // layer.groups
            for g in range(layer.groups):  # each group's filters read only its own input channels
                part = kernel[..., g * per_group:(g + 1) * per_group]
                part = part[:, :, :self.args.max_channels, :self.args.max_channels]
                png = (f"filters_{_file_name(layer.name)}"
                       + (f"_group{g}" if layer.groups > 1 else "") + ".png")
                title = (f"{layer.name}: {part.shape[3]} filters (rows) x {part.shape[2]} input "
                         "channels (columns)"
                         + (f", group {g + 1} of {layer.groups}" if layer.groups > 1 else ""))
                render.grid_png(self.out / png,
                                filters.grid(filters.per_input_channel(part), part.shape[2]), title)
                self.figure("Filters", png, title + "; each filter stretched to [0, 1] over all "
                            "its input channels together")

    def draw_feature_maps(self, image: np.ndarray) -> None:
        names = tuple(t.name for t in self.chosen)
        _, maps = self.forward(self.normalize(image[None]), names)
        for t in self.chosen:
            png = f"maps_{_file_name(t.name)}.png"
            shape = "x".join(map(str, t.output_shape))
            title = f"{t.name} ({t.kind}) output {shape}, theoretical receptive field {_rf(t)}"
            render.maps_png(self.out / png, np.asarray(maps[t.name][0]), title,
                            self.args.max_channels)
            shown = min(t.output_shape[2], self.args.max_channels)
            self.figure("Feature maps (first image)", png,
                        f"{title}; first {shown} channels, each stretched to its own range")

    def draw_erf(self, given: list[np.ndarray]) -> None:
        count = self.args.erf_images
        if self.loaded.has_data and not self.images:
            pool = [b for b, _ in self.eval_images(count)]
            batch = np.concatenate(pool)[:count] if pool else np.stack(given)
        else:
            batch = np.stack(given)[:count]
        x = self.normalize(batch)
        panels = []
        for t in self.chosen:
            layer_fn = (lambda name: lambda b: features.feature_maps(
                self.model, self.variables, b, [name])[name])(t.name)
            m = np.asarray(erf.erf_map(layer_fn, x))
            cy, cx = t.centre(t.output_shape[0] // 2, t.output_shape[1] // 2)
            numbers = erf.erf_numbers(m, (cy, cx), t.field)
            self.record["layers"].append({
                "name": t.name, "kind": t.kind, "output_shape": list(t.output_shape),
                "jump": list(t.jump), **numbers, "erf_images": int(batch.shape[0])})
            box = patches.field_box(t, t.output_shape[0] // 2, t.output_shape[1] // 2)
            text = (f"RF {_rf(t)}, support {numbers['erf_support'][0]}x{numbers['erf_support'][1]}, "
                    f"95% in {numbers['erf_d95']}")
            panels.append((t.name, m, box, text))
        png = "erf.png"
        render.erf_png(self.out / png, panels)
        self.figure("Effective receptive fields", png,
                    f"gradient of each layer's centre unit (summed over channels) with respect to "
                    f"the input, mean |gradient| over {batch.shape[0]} images; numbers: theoretical "
                    "receptive field, measured support, side of the centred square holding 95% "
                    "of the gradient mass (Luo et al. 2016)")

    def draw_attribution(self, index: int, image: np.ndarray, label: int | None) -> None:
        args, t = self.args, self.cam_layer
        x = self.normalize(image[None])[0]
        logits_fn = lambda b: self.forward(b)[0]  # noqa: E731
        probs = np.asarray(jax.nn.softmax(logits_fn(x[None])[0]))
        predicted = int(np.argmax(probs))
        cls = args.cls if args.cls is not None else (label if label is not None else predicted)
        if not 0 <= cls < probs.size:
            from cnnjax.errors import UserError

            raise UserError(f"--class {cls} is not a class of this model: 0 to {probs.size - 1}")
        _, sal = attribution.saliency(logits_fn, x, cls)

        def logits_and_activation(b, delta):
            logits, acts = features.apply_capturing(self.model, self.variables, b, [t.name],
                                                    {t.name: delta})
            return logits, acts[t.name]

        cam = attribution.grad_cam(logits_and_activation, x, cls, t.output_shape)
        size = image.shape[:2]
        patch = args.occlusion_patch or max(1, round(size[0] / 8))
        stride = args.occlusion_stride or max(1, patch // 2)
        grey = self.normalize(np.full((1, 1, 1, image.shape[-1]), 128, np.uint8))[0, 0, 0]
        prob_fn = lambda b: jax.nn.softmax(self.forward(jnp.asarray(b))[0])  # noqa: E731
        occ = attribution.occlusion(prob_fn, np.asarray(x), cls, patch, stride, np.asarray(grey),
                                    args.batch_size)
        name = args.image[index] if index < len(args.image) else f"evaluation image {index}"
        self.record["images"].append({
            "image": str(name), "label": label, "predicted_class": predicted,
            "probability": float(probs[predicted]), "explained_class": cls,
            "explained_probability": float(probs[cls]), "gradcam_layer": t.name,
            "occlusion": {"patch": patch, "stride": stride, "max_drop": float(occ.max())}})
        png = f"attribution_{index}.png"
        title = (f"{name}: predicted {predicted} ({probs[predicted]:.1%}), explaining class {cls} "
                 f"({probs[cls]:.1%})" + (f", true class {label}" if label is not None else ""))
        render.attribution_png(self.out / png, image / 255.0, [
            ("saliency |d logit / d x|", sal),
            (f"Grad-CAM at {t.name}", attribution.upsample(cam, size, t.start, t.jump)),
            (f"occlusion {patch}px/{stride}: drop of p", _occlusion_image(occ, size, patch, stride)),
        ], title)
        self.figure("Attribution", png, title + f"; saliency (Simonyan et al. 2013), Grad-CAM at "
                    f"{t.name} (Selvaraju et al. 2017), occlusion by a grey {patch}x{patch} square "
                    f"every {stride} pixels (Zeiler & Fergus 2014)")

    def draw_patches(self) -> None:
        args = self.args
        names = tuple(t.name for t in self.patch_layers)
        units = {t.name: list(range(min(args.units, t.output_shape[2]))) for t in self.patch_layers}
        top = {n: {} for n in names}
        crops: dict[tuple[str, int], np.ndarray] = {}
        seen = 0
        for batch, _ in self.eval_images(args.patch_examples):
            _, acts = self.forward(self.normalize(batch), names)
            for t in self.patch_layers:
                new = patches.best_per_image(np.asarray(acts[t.name]), units[t.name], seen)
                top[t.name] = patches.merge_top(top[t.name], new, args.top_k)
                for hits in top[t.name].values():
                    for h in hits:
                        if h.image >= seen and (t.name, h.image, h.y, h.x) not in crops:
                            box = patches.field_box(t, h.y, h.x)
                            crops[(t.name, h.image, h.y, h.x)] = patches.crop(
                                batch[h.image - seen] / 255.0, box, fill=0.5)
            seen += batch.shape[0]
        for t in self.patch_layers:
            rows = [(f"unit {u}", [crops[(t.name, h.image, h.y, h.x)] for h in top[t.name][u]])
                    for u in units[t.name]]
            self.record["top_patches"][t.name] = {
                str(u): [dataclasses.asdict(h) | {"box": list(patches.field_box(t, h.y, h.x))}
                         for h in top[t.name][u]] for u in units[t.name]}
            png = f"patches_{_file_name(t.name)}.png"
            title = (f"{t.name}: top {args.top_k} of {seen} evaluation images per unit, cropped to "
                     f"the {_rf(t)} receptive field")
            render.patches_png(self.out / png, rows, title)
            self.figure("Top patches", png, title + " (grey: padding outside the image)")


def take(batches, limit: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(images, labels) of the real (mask True) examples of `batches`, stopping after `limit` of
    them (0: all). The batches' arrays are not written to (tf.data's are read-only)."""
    seen = 0
    for batch in batches:
        keep = np.array(batch["mask"], bool)
        if limit:
            keep &= np.cumsum(keep) <= limit - seen
        if not keep.any():
            return
        seen += int(keep.sum())
        yield np.asarray(batch["image"])[keep], np.asarray(batch["label"])[keep]


def _occlusion_image(occ: np.ndarray, size: tuple[int, int], patch: int, stride: int) -> np.ndarray:
    """The (ny, nx) drops spread over the image: each pixel gets the mean drop of the squares that
    cover it (0 where none does)."""
    total, count = np.zeros(size), np.zeros(size)
    for i in range(occ.shape[0]):
        for j in range(occ.shape[1]):
            total[i * stride:i * stride + patch, j * stride:j * stride + patch] += occ[i, j]
            count[i * stride:i * stride + patch, j * stride:j * stride + patch] += 1
    return total / np.maximum(count, 1)


def _json(record: dict) -> str:
    import json

    def plain(value):
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
        raise TypeError(type(value).__name__)

    return json.dumps(record, indent=1, default=plain) + "\n"
