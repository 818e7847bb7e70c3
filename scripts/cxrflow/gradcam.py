"""Grad-CAM heat maps for Keras 3 classifiers, on the tensorflow, jax and torch backends.

Where the model looks is the quickest check that a COVID-19 score comes from the
lungs and not from burnt-in text or a border. Keras 3 has no backend-neutral
gradient API, so exactly one function, ``_class_score_gradients``, dispatches on
the backend; everything else is keras.ops / NumPy / OpenCV.

The model is split at the target conv layer into ``front`` (input -> activations
A) and ``back`` (A -> class score); Grad-CAM needs dScore/dA, which every backend
can give as the gradient of ``back`` with respect to its input. This also works
when the conv layer sits inside a nested base model (a keras.applications base
called as one layer of the classifier, as ``model.build_model`` does): layer
paths are written ``"vgg19/block5_conv4"``.

The score is the class logit (pre-softmax, as in Selvaraju et al.) when the last
layer is a softmax Dense: softmax probabilities saturate at 1.0 in float32 and
then give zero gradients and blank maps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import cv2
import keras
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

# Rank-4 layers that only resample, pad or pass through: a heat map is taken at
# the last layer that computes features, not at these (e.g. VGG19's block5_pool).
_NOT_FEATURE_LAYERS = (
    keras.layers.InputLayer,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
    keras.layers.ZeroPadding2D,
    keras.layers.Cropping2D,
    keras.layers.Rescaling,
    keras.layers.Resizing,
    keras.layers.Normalization,
)
_BATCH = 16  # images per gradient pass: bounds memory for VGG19/ResNet50 at 224x224


def _output_rank(layer: keras.layers.Layer) -> int | None:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):  # never called, or shared between several calls
        return None


def last_conv_layer_name(model: keras.Model) -> str:
    """Path of the last feature layer with a spatial (rank-4) output; nested models give ``outer/inner``."""
    for layer in reversed(model.layers):
        if isinstance(layer, keras.Model):
            try:
                return f"{layer.name}/{last_conv_layer_name(layer)}"
            except ValueError:
                continue
        if not isinstance(layer, _NOT_FEATURE_LAYERS) and _output_rank(layer) == 4:
            return layer.name
    raise ValueError(f"model {model.name!r} has no layer with a spatial (rank-4) output")


def _resolve_path(model: keras.Model, layer_name: str) -> list[str]:
    """``a/b`` -> [a, b]; a bare name not at the top level is looked up inside nested models."""
    path = layer_name.split("/")
    if path[0] in {layer.name for layer in model.layers}:
        return path
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            try:
                found.append([layer.name, *_resolve_path(layer, layer_name)])
            except ValueError:
                pass
    if len(found) != 1:
        where = "not found" if not found else f"ambiguous: {['/'.join(p) for p in found]}"
        raise ValueError(f"layer {layer_name!r} {where} in model {model.name!r}")
    return found[0]


def _connected(inputs: Any, tensor: Any) -> bool:
    try:
        keras.Model(inputs, tensor)
    except ValueError:
        return False
    return True


def _call_node(model: keras.Model, layer: keras.layers.Layer) -> Any:
    """The call of a nested model inside ``model``'s graph (its outer input/output tensors).

    A base shared by several models has one node per call; the one reachable from
    ``model``'s input is ours. Keras 3 has no public accessor for these tensors.
    """
    inputs = _single(model.inputs)
    nodes = [n for n in layer._inbound_nodes if _connected(inputs, n.output_tensors[0])]
    if len(nodes) != 1:
        raise ValueError(
            f"nested model {layer.name!r} is called {len(nodes)} times in {model.name!r}; Grad-CAM needs one call"
        )
    return nodes[0]


def _identity(a: Any) -> Any:
    return a


def _single(inputs: Sequence[Any]) -> Any:
    """The one input tensor (a list would make Keras warn on every tensor call)."""
    if len(inputs) != 1:
        raise ValueError(f"Grad-CAM supports single-input models, this one has {len(inputs)} inputs")
    return inputs[0]


def _split(model: keras.Model, path: list[str], target: Any) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """(front, back): front(x) = activations at ``path``, back(activations) = ``target`` tensor of ``model``."""
    layer = model.get_layer(path[0])
    if len(path) == 1:
        out = _call_node(model, layer).output_tensors[0] if isinstance(layer, keras.Model) else layer.output
        back = _identity if out is target else keras.Model(out, target)
        return keras.Model(_single(model.inputs), out), back
    if not isinstance(layer, keras.Model):
        raise ValueError(f"{path[0]!r} is not a nested model, cannot descend to {'/'.join(path[1:])!r}")
    node = _call_node(model, layer)
    inner_front, inner_back = _split(layer, path[1:], layer.output)
    outer_in = node.input_tensors[0]
    pre = None if any(outer_in is t for t in model.inputs) else keras.Model(_single(model.inputs), outer_in)
    post = _identity if node.output_tensors[0] is target else keras.Model(node.output_tensors[0], target)

    def front(x: Any) -> Any:
        return inner_front(x if pre is None else pre(x))

    def back(a: Any) -> Any:
        return post(inner_back(a))

    return front, back


def _score_model(model: keras.Model, path: list[str]) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """(front, score): score(A) gives class logits when the head is a softmax Dense, else the outputs."""
    last = model.layers[-1]
    if isinstance(last, keras.layers.Dense) and last.activation is keras.activations.softmax:
        front, back = _split(model, path, last.input)

        def score(a: Any) -> Any:
            logits = keras.ops.matmul(back(a), last.kernel)
            return logits + last.bias if last.use_bias else logits

        return front, score
    return _split(model, path, model.outputs[0])


def _class_score_gradients(grad_model: Callable[[Any], Any], x: np.ndarray, class_idx: int) -> np.ndarray:
    """d score[:, class_idx] / d x for every sample (samples are independent, so the batch sum is fine)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        t = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(t)
            score = tf.reduce_sum(grad_model(t)[:, class_idx])
        return tape.gradient(score, t).numpy()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        return np.asarray(jax.grad(lambda a: jnp.sum(grad_model(a)[:, class_idx]))(jnp.asarray(x)))
    if backend == "torch":
        import torch

        t = keras.ops.convert_to_tensor(x).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(grad_model(t)[:, class_idx].sum(), t)
        return grad.detach().cpu().numpy()
    raise NotImplementedError(f"Grad-CAM has no gradient code for the {backend!r} Keras backend")


def gradcam(model: keras.Model, images: np.ndarray, class_idx: int, layer_name: str | None = None) -> np.ndarray:
    """Grad-CAM maps [N, h, w] in [0, 1] at the conv layer's resolution (``overlay`` resizes).

    ``images`` are float, already preprocessed the way the model was trained
    (channels last). A map is all zeros where no region raises the class score
    (all weighted activations negative): nothing to show, and honestly so.
    """
    if keras.config.image_data_format() != "channels_last":
        raise ValueError("Grad-CAM here assumes channels_last images")
    x = np.asarray(images, dtype="float32")
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"expected a non-empty image batch [N, H, W, C], got shape {x.shape}")
    n_out = model.outputs[0].shape[-1]
    if not 0 <= class_idx < n_out:
        raise ValueError(f"class_idx {class_idx} outside the model's {n_out} outputs")
    path = _resolve_path(model, layer_name or last_conv_layer_name(model))
    front, score = _score_model(model, path)
    maps = []
    for start in range(0, len(x), _BATCH):
        acts = keras.ops.convert_to_numpy(front(x[start : start + _BATCH]))
        if acts.ndim != 4:
            raise ValueError(f"layer {'/'.join(path)!r} output has shape {acts.shape}, not [N, h, w, c]")
        grads = _class_score_gradients(score, acts, class_idx)
        weights = grads.mean(axis=(1, 2))  # channel importance: global-average-pooled gradients
        maps.append(np.maximum(np.einsum("nhwc,nc->nhw", acts, weights), 0))
    cam = np.concatenate(maps).astype(np.float32)
    peak = cam.max(axis=(1, 2), keepdims=True)
    return np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)


def overlay(gray: np.ndarray, heatmap: np.ndarray, *, alpha: float) -> np.ndarray:
    """BGR uint8: the radiograph with the heat map (JET colours, resized to it) blended on top."""
    img = np.asarray(gray)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim != 2 or img.dtype != np.uint8:
        raise ValueError(f"overlay needs a 2-D uint8 grayscale image, got {img.dtype} {img.shape}")
    hm = np.asarray(heatmap, dtype=np.float32)
    if hm.ndim != 2 or not np.isfinite(hm).all() or hm.min() < 0 or hm.max() > 1:
        raise ValueError("heatmap must be a finite 2-D array in [0, 1]")
    hm = cv2.resize(hm, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
    colours = cv2.applyColorMap(np.clip(hm * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), 1 - alpha, colours, alpha, 0)


def select_examples(
    predictions: pd.DataFrame, classes: Sequence[str], per_cell: int, seed: int | None = None
) -> list[tuple[str, list[str]]]:
    """Rows for ``gradcam_panel``: per true class, some of its correct and some of its wrong predictions.

    ``seed=None``: the most confident ones (sorted by the predicted class's probability,
    then image id). ``seed`` given: a random sample drawn with that seed, which shows
    typical cases rather than the extremes. Either way a rerun shows the same images.
    """
    missing = {"image_id", "true_label", "predicted_label", *(f"prob_{c}" for c in classes)} - set(predictions.columns)
    if missing:
        raise ValueError(f"predictions lack columns {sorted(missing)}")
    df = predictions.copy()
    probs = df[[f"prob_{c}" for c in classes]].to_numpy(float)
    index = {c: k for k, c in enumerate(classes)}
    df["_confidence"] = probs[np.arange(len(df)), df["predicted_label"].map(index).to_numpy()]
    rng = None if seed is None else np.random.default_rng(seed)
    rows = []
    for cls in classes:
        of_class = df[df["true_label"] == cls]
        for kind, mask in (
            ("correct", of_class["predicted_label"] == cls),
            ("wrong", of_class["predicted_label"] != cls),
        ):
            cell = of_class[mask]
            if rng is None:
                chosen = cell.sort_values(["_confidence", "image_id"], ascending=[False, True])
                ids = chosen["image_id"].astype(str).head(per_cell).tolist()
            else:
                pool = sorted(cell["image_id"].astype(str))
                picked = rng.choice(len(pool), size=min(per_cell, len(pool)), replace=False) if pool else []
                ids = [pool[i] for i in sorted(picked)]
            rows.append((f"{cls}: {kind} ({int(mask.sum())})", ids))
    return rows


def gradcam_panel(
    rows: Sequence[tuple[str, Sequence[np.ndarray]]],
    tile_inches: float = 2.0,
    captions: Sequence[Sequence[str]] | None = None,
) -> Figure:
    """A grid figure, one row per (title, BGR overlays); empty rows say so instead of vanishing.

    ``captions`` (optional, one list per row) are printed under the tiles: image id, probability.
    """
    if not rows:
        raise ValueError("no rows to draw")
    n_cols = max(1, max(len(images) for _, images in rows))
    fig = Figure(figsize=(tile_inches * n_cols + 1.5, tile_inches * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for r, (title, images) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(images):
                ax.imshow(cv2.cvtColor(np.asarray(images[c]), cv2.COLOR_BGR2RGB))
                if captions is not None and c < len(captions[r]):
                    ax.set_xlabel(captions[r][c], fontsize=7)
            elif c == 0:
                ax.text(0.5, 0.5, "no images", ha="center", va="center", transform=ax.transAxes)
        axes[r][0].set_ylabel(title, rotation=0, ha="right", va="center")
    return fig


def panel_main(
    model_path: str,
    test_csv: str,
    predictions_csv: str,
    output_png: str,
    classes: Sequence[str],
    experiment: dict[str, Any],
    settings: dict[str, Any],
    log_path: str,
) -> list[tuple[str, list[str]]]:
    """Entry point for scripts/gradcam_panel.py (KERAS_BACKEND already set): the Grad-CAM panel of one model.

    Per true class a seeded sample of correct and of wrong test predictions
    (``settings``: the config's ``audit.gradcam``, {per_cell, seed, layer, alpha}); each tile is
    the map for the class the model *predicted* (what made it say so), over the
    preprocessed image at full resolution. Returns the rows (titles, image ids).
    """
    from .data import read_gray, read_split_table
    from .rule_log import open_log
    from .results_io import read_predictions
    from .model import preprocess_batch

    log = open_log(log_path)
    classes = list(classes)
    model = keras.saving.load_model(model_path)
    predictions = read_predictions(predictions_csv)
    paths = read_split_table(test_csv, classes).set_index("image_id")["path"]
    by_id = predictions.set_index("image_id")
    layer = settings.get("layer")
    rows = select_examples(predictions, classes, settings["per_cell"], seed=settings["seed"])
    tiles, captions = [], []
    for _, ids in rows:
        images, texts = [], []
        for image_id in ids:
            row = by_id.loc[image_id]
            predicted = classes.index(row["predicted_label"])
            x = read_gray(paths[image_id], experiment["image_size"])[None, :, :, None]
            heat = gradcam(model, preprocess_batch(experiment["arch"], x), predicted, layer)[0]
            full = cv2.imread(str(paths[image_id]), cv2.IMREAD_GRAYSCALE)
            images.append(overlay(full, heat, alpha=settings["alpha"]))
            name = image_id if len(image_id) <= 24 else "..." + image_id[-21:]  # the distinct end
            texts.append(f"{name}\n-> {row['predicted_label']} p={row[f'prob_{classes[predicted]}']:.2f}")
        tiles.append(images)
        captions.append(texts)
    fig = gradcam_panel([(title, images) for (title, _), images in zip(rows, tiles)], captions=captions)
    where = layer or last_conv_layer_name(model)
    fig.suptitle(f"Grad-CAM at {where} for the predicted class (seed {settings['seed']})", fontsize=9)
    fig.savefig(output_png, dpi=100)
    log.info("Grad-CAM panel of %d images at layer %s written to %s", sum(len(i) for _, i in rows), where, output_png)
    return rows
