"""Class activation and saliency maps through tf-keras-vis, for any flat functional Keras model.

Methods (all computed by tf-keras-vis; this module only adapts it to Keras 3 and batches it):

- ``"gradcam"`` (Selvaraju et al.), ``"gradcam++"`` (Chattopadhyay et al.), ``"layercam"``;
- ``"scorecam"`` (all channels of the layer) and ``"faster-scorecam"`` (the ``max_n`` channels
  with the largest spatial variance);
- ``"saliency"`` (vanilla gradients) and ``"smoothgrad"`` (averaged over noisy copies).

Scores are **pre-softmax**: tf-keras-vis' ``ReplaceToLinear`` modifier turns the output layer
(``Activation("softmax", name="probabilities")`` in kidney_tf models) linear on a clone, so the
caller's model is never modified. Adapter details (tf-keras-vis 0.8.7 on Keras 3 / TF 2.21):

- the model is first viewed as a plain ``keras.Model(inputs, outputs)`` so cloning works for
  functional subclasses such as ``CamFosteringModel`` and for re-loaded models;
- the CAM layer is used as given (``seek_penultimate_conv_layer=False``): tf-keras-vis would
  otherwise walk back from ``conv5_block3_out`` (an activation) to the last ``Conv2D``, before the
  residual add and batch norm;
- Grad-CAM++ multiplies gradients by ``exp(score)``, which overflows to NaN for logits above ~88;
  that factor is a per-map scale removed by normalisation, so gradient methods get the score
  ``s - stop_gradient(s)`` (value 0, same gradients);
- Score-CAM's internal ``model.predict`` is silenced; it runs one image at a time because it
  builds one masked copy of the image per channel;
- gradient CAMs (Grad-CAM, Grad-CAM++, LayerCAM) only need gradients above the CAM layer, but
  tf-keras-vis runs the whole model eagerly under a tape that watches the input. Where the model
  splits at the CAM layer (everything after it depends on it alone, as in kidney_tf's GAP heads),
  the part below runs once as a compiled ``tf.function`` (giving the features and the
  probabilities: no separate ``predict``), and tf-keras-vis explains the head from the features;
  its own ``zoom`` and ``normalize`` then upsample exactly as ``expand_cam`` would. The maps are
  the same as the unsplit computation's (tested); it costs about one prediction instead of
  about five (`kidney-tf benchmark`). Models that do not split run the unsplit path.

Default layer: ``model.cam_layer`` if the model has one (``CamFosteringModel``), else
``kidney_tf.models.builders.last_conv_layer_name``: ``conv5_block3_out`` (ResNet-50),
``top_activation`` (EfficientNet), else the last layer with a 4-D output. Maps are float32 in [0, 1] (min-max normalised per map by tf-keras-vis), upsampled
bilinearly to the input size unless ``upsample=False``.

Usage::

    from kidney_tf.explain.cams import compute_cams, explain_batch
    maps = compute_cams(model, images, method="gradcam++")   # [B, H, W] float32
    result = explain_batch(model, images)                      # CamResult with native grid, class
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kidney_tf.recipes import CAM_METHODS, EXPLAIN_METHODS, GRADIENT_CAM_METHODS


@dataclass
class CamResult:
    """Maps and what they explain.

    ``maps`` float32 ``[B, H, W]`` in [0, 1]; ``native_shape`` the layer's grid (input size for
    saliency methods); ``class_index`` int ``[B]`` explained class; ``probabilities`` float32
    ``[B, C]`` the model's output for the images.
    """

    maps: np.ndarray
    native_shape: tuple[int, int]
    layer: str | None
    method: str
    class_index: np.ndarray
    probabilities: np.ndarray


def default_cam_layer(model) -> str:
    """Name of the layer whose activations CAMs are computed from (see module docstring)."""
    from kidney_tf.models.builders import last_conv_layer_name

    own = getattr(model, "cam_layer", None)
    if isinstance(own, str) and own:
        return own
    try:
        name = last_conv_layer_name(model)
    except ValueError:
        name = None
    if name is None or model.get_layer(name).__class__.__name__ == "InputLayer":
        raise ValueError(
            f"model {model.name!r} has no layer with a 4-D output to compute CAMs from; "
            "pass layer=NAME (a backbone nested as one layer must be built flat)"
        )
    return name


def _plain_view(model):
    """A plain functional ``keras.Model`` over the same layers (clonable by tf-keras-vis)."""
    import keras

    if not getattr(model, "inputs", None) or not getattr(model, "outputs", None):
        raise ValueError(
            f"model {model.name!r} is not a functional model; tf-keras-vis needs "
            "model.inputs/outputs (build it with keras.Model(inputs, outputs))"
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"model {model.name!r}: expected one input and one output")
    return keras.Model(model.inputs, model.outputs, name=f"{model.name}_view")


def _split_at(model, layer: str):
    """``(trunk, head)`` functional views: input -> [features, output] and features -> output.

    None when the layers after ``layer`` also read tensors from before it (e.g. a skip
    connection around it), so the head cannot be fed the features alone.
    """
    import keras

    features = model.get_layer(layer).output
    try:
        head = keras.Model(features, model.outputs[0], name=f"{model.name}_cam_head")
    except Exception:  # Keras raises several types for a disconnected graph
        return None
    trunk = keras.Model(model.inputs, [features, model.outputs[0]], name=f"{model.name}_cam_trunk")
    return trunk, head


def _zero_valued(score):
    """Wrap a tf-keras-vis score: same gradients, value 0 (keeps Grad-CAM++'s exp() finite)."""
    import tensorflow as tf

    def score_fn(output):
        value = score(output)
        return value - tf.stop_gradient(value)

    return score_fn


class CamExplainer:
    """A tf-keras-vis visualiser built once for ``model`` and reused for many batches.

    ``split=False`` runs tf-keras-vis over the whole model even where it splits at the CAM
    layer (same maps, slower; see the module docstring).

    Usage::

        explainer = CamExplainer(model, method="gradcam++")
        for images, _ in dataset:
            result = explainer.explain(images)
    """

    def __init__(
        self,
        model,
        *,
        method: str = "gradcam++",
        layer: str | None = None,
        batch_size: int = 16,
        smooth_samples: int = 20,
        smooth_noise: float = 0.2,
        max_n: int = 10,
        split: bool = True,
    ) -> None:
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.layercam import Layercam
        from tf_keras_vis.saliency import Saliency
        from tf_keras_vis.scorecam import Scorecam
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

        method = method.lower()
        if method not in EXPLAIN_METHODS:
            raise ValueError(
                f"unknown method {method!r}; choose one of {', '.join(EXPLAIN_METHODS)}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.method = method
        self.batch_size = int(batch_size)
        self.smooth_samples = int(smooth_samples)
        self.smooth_noise = float(smooth_noise)
        self.max_n = int(max_n)
        self.layer = None
        if method in CAM_METHODS:
            self.layer = layer or default_cam_layer(model)
            try:
                model.get_layer(self.layer)
            except ValueError as exc:
                raise ValueError(f"model {model.name!r} has no layer {self.layer!r}") from exc
        visualiser = {
            "gradcam": Gradcam,
            "gradcam++": GradcamPlusPlus,
            "layercam": Layercam,
            "scorecam": Scorecam,
            "faster-scorecam": Scorecam,
            "saliency": Saliency,
            "smoothgrad": Saliency,
        }[method]
        parts = None
        if split and method in GRADIENT_CAM_METHODS:
            parts = _split_at(_plain_view(model), self.layer)
        self._trunk = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            if parts is None:
                explained = _plain_view(model)
            else:
                import tensorflow as tf

                trunk, explained = parts
                self._trunk = tf.function(lambda x: trunk(x, training=False), reduce_retracing=True)
                self._head_input = explained.layers[0].name
            self._viz = visualiser(explained, model_modifier=ReplaceToLinear(), clone=True)
        if method in ("scorecam", "faster-scorecam"):
            predict = self._viz.model.predict
            self._viz.model.predict = lambda x, **kw: predict(x, verbose=0, **kw)
        input_shape = tuple(model.inputs[0].shape[1:3])
        self.input_size = input_shape if None not in input_shape else None

    # ---------------------------------------------------------------------------- helpers
    def _images(self, images) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        if images.ndim == 3:
            images = images[np.newaxis]
        if images.ndim != 4:
            raise ValueError(f"expected images of shape [B, H, W, C], got {images.shape}")
        if self.input_size is not None and images.shape[1:3] != self.input_size:
            raise ValueError(
                f"images are {images.shape[1]}x{images.shape[2]} but model {self.model.name!r} "
                f"expects {self.input_size[0]}x{self.input_size[1]}; resize them first"
            )
        return images

    @staticmethod
    def _requested_indices(class_index, n: int) -> np.ndarray | None:
        """``class_index`` as ``[n]`` ints (None stays None: the predicted class)."""
        if class_index is None:
            return None
        indices = np.asarray(class_index, dtype=np.int64).reshape(-1)
        if indices.size == 1:
            indices = np.full(n, indices[0], np.int64)
        if indices.size != n:
            raise ValueError(f"class_index: {indices.size} indices for {n} images")
        return indices

    def _class_indices(self, class_index, probabilities: np.ndarray) -> np.ndarray:
        n, num_classes = probabilities.shape
        indices = self._requested_indices(class_index, n)
        if indices is None:
            return probabilities.argmax(axis=1).astype(np.int64)
        if indices.min() < 0 or indices.max() >= num_classes:
            raise ValueError(f"class_index out of range 0..{num_classes - 1}: {indices.tolist()}")
        return indices

    def _run_split(self, chunk: np.ndarray, indices: np.ndarray, upsample: bool):
        """Maps and probabilities of one chunk through the trunk/head split."""
        from scipy.ndimage import zoom
        from tf_keras_vis.utils import normalize, zoom_factor
        from tf_keras_vis.utils.scores import CategoricalScore

        features, probabilities = self._trunk(chunk)
        probabilities = np.asarray(probabilities, np.float32)
        indices = self._class_indices(indices, probabilities)
        maps = self._viz(
            _zero_valued(CategoricalScore(indices.tolist())),
            features,
            penultimate_layer=self._head_input,
            seek_penultimate_conv_layer=False,
            expand_cam=False,
            normalize_cam=False,
        )
        maps = np.asarray(maps, np.float32)
        if upsample:  # what tf-keras-vis' expand_cam does: zoom the raw map, then normalise
            maps = zoom(maps, zoom_factor(maps.shape, chunk.shape[:3]), order=1)
        return normalize(maps), indices, probabilities

    def _run(self, chunk: np.ndarray, indices: np.ndarray, upsample: bool) -> np.ndarray:
        from tf_keras_vis.utils.scores import CategoricalScore

        score = CategoricalScore(indices.tolist())
        if self.method in ("saliency", "smoothgrad"):
            samples = self.smooth_samples if self.method == "smoothgrad" else 0
            return self._viz(
                _zero_valued(score), chunk, smooth_samples=samples, smooth_noise=self.smooth_noise
            )
        common = dict(
            penultimate_layer=self.layer,
            seek_penultimate_conv_layer=False,
            expand_cam=upsample,
        )
        if self.method.endswith("scorecam"):
            max_n = None
            if self.method == "faster-scorecam":
                channels = int(self.model.get_layer(self.layer).output.shape[-1])
                max_n = min(self.max_n, channels)
            return self._viz(score, chunk, batch_size=self.batch_size, max_N=max_n, **common)
        return self._viz(_zero_valued(score), chunk, **common)

    # ------------------------------------------------------------------------------- API
    def explain(self, images, *, class_index=None, upsample: bool = True) -> CamResult:
        """Maps for ``images`` (``[B, H, W, C]`` raw pixels as the model expects them).

        ``class_index``: None explains the predicted class; an int or one index per image.
        """
        images = self._images(images)
        maps = []
        if self._trunk is not None:
            wanted = self._requested_indices(class_index, len(images))
            parts = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                for start in range(0, len(images), self.batch_size):
                    stop = start + self.batch_size
                    chunk_wanted = None if wanted is None else wanted[start:stop]
                    parts.append(self._run_split(images[start:stop], chunk_wanted, upsample))
            maps = [m for m, _, _ in parts]
            indices = np.concatenate([i for _, i, _ in parts])
            probabilities = np.concatenate([p for _, _, p in parts])
        else:
            probabilities = np.asarray(
                self.model.predict(images, batch_size=self.batch_size, verbose=0), np.float32
            )
            indices = self._class_indices(class_index, probabilities)
            step = 1 if self.method.endswith("scorecam") else self.batch_size
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # Keras 3: list-vs-tensor notice
                for start in range(0, len(images), step):
                    stop = start + step
                    chunk = self._run(images[start:stop], indices[start:stop], upsample)
                    maps.append(np.asarray(chunk, np.float32).reshape(-1, *np.shape(chunk)[-2:]))
        stacked = np.nan_to_num(np.concatenate(maps), nan=0.0, posinf=1.0, neginf=0.0)
        stacked = np.clip(stacked, 0.0, 1.0).astype(np.float32)
        if self.layer is not None:
            grid = tuple(int(d) for d in self.model.get_layer(self.layer).output.shape[1:3])
        else:
            grid = tuple(int(d) for d in images.shape[1:3])
        return CamResult(stacked, grid, self.layer, self.method, indices, probabilities)


def explain_batch(
    model,
    images,
    *,
    method: str = "gradcam++",
    layer: str | None = None,
    class_index: int | Sequence[int] | np.ndarray | None = None,
    upsample: bool = True,
    batch_size: int = 16,
    **options,
) -> CamResult:
    """Maps plus their grid, layer and explained classes (see ``CamExplainer`` for ``options``).

    Usage: ``result = explain_batch(model, images, method="gradcam++")``.
    """
    explainer = CamExplainer(model, method=method, layer=layer, batch_size=batch_size, **options)
    return explainer.explain(images, class_index=class_index, upsample=upsample)


def compute_cams(
    model,
    images,
    *,
    method: str = "gradcam++",
    layer: str | None = None,
    class_index: int | Sequence[int] | np.ndarray | None = None,
    upsample: bool = True,
    batch_size: int = 16,
    **options,
) -> np.ndarray:
    """Float32 ``[B, H, W]`` maps in [0, 1] for ``images``; see the module docstring.

    Usage: ``maps = compute_cams(model, images, method="gradcam++", class_index=labels)``.
    """
    return explain_batch(
        model,
        images,
        method=method,
        layer=layer,
        class_index=class_index,
        upsample=upsample,
        batch_size=batch_size,
        **options,
    ).maps


__all__ = [
    "CamExplainer",
    "CamResult",
    "compute_cams",
    "default_cam_layer",
    "explain_batch",
]
