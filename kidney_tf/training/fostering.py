"""CAM fostering: a Keras model whose training loss rewards compact class activation maps.

``loss = compiled loss (class-weighted CE) + λ · mean normalised entropy of the TRUE class's CAM``
at the last conv block, with gradients flowing through the CAM. :class:`CamFosteringModel` is a
functional ``keras.Model`` subclass that shares the classifier's layers (never nests them), so
``fit``/``evaluate``/``predict``, callbacks, ``class_weight``, ``steps_per_execution``,
``tf.distribute`` strategies, mixed precision and ``.keras`` saving all work as usual.

CAM methods:

- ``"exact"``: for a ``GAP -> [Dropout] -> Dense("logits")`` head the class activation
  map is exactly ``relu(features @ W[:, c])``; computed from the same forward pass (cheap).
- ``"gradcam++"`` (default): the map Grad-CAM++ (tf-keras-vis, pre-softmax score) gives for the
  same head, in closed form: with a GAP head the logit's gradient is constant over positions, so Grad-CAM++'s
  alphas are uniform and its map is ``features @ relu(W[:, c])``; tf-keras-vis then min-max
  normalises, so the penalised map is shifted to a minimum of 0. Fostering this map lowers the
  entropy that the evaluation measures (the ``"exact"`` map can sharpen through negative class
  weights, which Grad-CAM++ ignores: on real CT the exact map's entropy halved while the
  evaluated Grad-CAM++ maps barely moved). Same cost as ``"exact"``.
- ``"gradcam"``: Grad-CAM with a nested ``GradientTape`` (gradient of the class logit w.r.t. the
  features, spatially averaged as channel weights); for heads with hidden layers.

Spatial terms (both off by default, so the paper's method is unchanged). Entropy alone rewards a
sharp map wherever it is; these say *where* the mass belongs, on the same map:

- ``outside_weight`` (λ_out): fraction of the true-class CAM's mass outside the foreground (the
  body/brain mask of :mod:`kidney_tf.data.crop`, no annotation needed);
- ``mask_weight`` (λ_mask): for images with a lesion mask, the fraction of the mass outside the
  lesion dilated by ``mask_dilation`` px; images without a mask (Normal, unannotated) contribute
  nothing.

Both are :func:`kidney_tf.explain.statistics.mass_outside` of the map upsampled to the input size,
i.e. the ``outside_fraction`` / ``1 − energy_in_mask`` the evaluation reports. They need the masks
next to the image: the dataset yields ``x`` as a dict ``{"image", "foreground", "lesion_mask"}``
(``build_datasets(..., with_foreground=True, with_lesion_masks=True)``); the model itself stays a
flat one-input classifier (tf-keras-vis, export), and ``train_step``/``test_step``/
``predict_step`` take the image from the dict. Plain ``(image, label)`` data still works for every
term that needs no mask.

Alive term (off by default): ``alive_weight`` (λ_alive), a hinge ``relu(0.5 − max(z) / max|z|)``
on the map ``z`` before its ReLU (:func:`kidney_tf.explain.maps.signed_cams`), which keeps each
map's positive peak at least half its largest magnitude. A Grad-CAM or exact map whose values
all fall below zero is empty: it reads as uniform, and no term above has a gradient there, so it
stays empty (seen when a stage-4 Grad-CAM grid was fostered). Zero whenever the maps are alive;
the Grad-CAM++ closed form (shifted to a minimum of 0) cannot die and never needs it.

loss = CE + λ · entropy + λ_out · outside-foreground mass + λ_mask · mass off the lesion
       + λ_alive · peak shortfall.

λ (``cam_weight``), λ_out, λ_mask and λ_alive are plain Python floats stored in the config: with all 0
the train step is the standard Keras one (no CAM ops in the graph). Assigning them drops the traced
step functions, so a new value takes effect at the next ``fit``/``evaluate`` call.

Reported metrics: ``loss`` (total), ``ce_loss`` (compiled loss incl. regularisers),
``cam_entropy`` (mean normalised entropy of the true-class CAM; in training only when a CAM term is
on, always in ``evaluate``), ``cam_empty`` (with it: the fraction of those maps with no positive
mass — an empty map reads as uniform, entropy 1, and gives the penalty no gradient, so a fostered
Grad-CAM map that reached zero stays there unless λ_alive > 0), ``cam_outside`` (mass outside the foreground) and
``cam_off_lesion`` (mass off the dilated lesion, images with a mask) whenever the data carries those masks, and the
compiled metrics. The CAM terms are unweighted batch means; ``class_weight``/sample weights weight
the compiled loss only.

Usage::

    model = CamFosteringModel.from_classifier(build_classifier("resnet50"), cam_weight=0.1)
    model.compile(optimizer="adam", loss=WeightedCrossEntropy([1, 1, 2, 1]), metrics=["accuracy"])
    model.fit(train, validation_data=val, epochs=5)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from kidney_tf.explain.maps import activate_cams, signed_cams
from kidney_tf.explain.statistics import entropy_and_mass, mass_outside
from kidney_tf.models.builders import Classifier, last_conv_layer_name, logits_layer
from kidney_tf.recipes import (
    CLOSED_FORM_METHODS,
    DEFAULT_MASK_DILATION,
    FOREGROUND_KEY,
    FOSTERING_CAM_METHODS,
    FOSTERING_WEIGHTS,
    IMAGE_KEY,
    LESION_KEY,
    check_choice,
)

# Layers that may sit between the CAM layer's pooling and the logits for the exact CAM identity.
_EXACT_SAFE_LAYERS = (keras.layers.GlobalAveragePooling2D, keras.layers.Dropout)

#: The alive term wants each map's positive peak at least this fraction of its largest magnitude.
ALIVE_MARGIN = 0.5


class _CamViews:
    """Functional views over the model's own layers (kept out of Keras tracking and saving)."""

    def __init__(self, model: keras.Model, cam_layer: keras.layers.Layer, method: str):
        features = cam_layer.output
        logits = logits_layer(model).output
        probabilities = model.outputs[0]
        self.full = keras.Model(model.inputs, [features, probabilities], name="cam_view")
        self.trunk = self.head = None
        if method == "gradcam":
            self.trunk = keras.Model(model.inputs, features, name="cam_trunk")
            self.head = keras.Model(features, [logits, probabilities], name="cam_head")


def _replicas() -> int:
    return tf.distribute.get_strategy().num_replicas_in_sync


def _batch_mean(values: tf.Tensor) -> tf.Tensor:
    """Mean over the batch, 0 (not NaN) for a replica whose share of a partial batch is empty."""
    return tf.math.divide_no_nan(tf.reduce_sum(values), tf.cast(tf.size(values), values.dtype))


def _global_batch_share(batch: tf.Tensor) -> tf.Tensor:
    """``local_batch * replicas / global_batch``: 1 when every replica got the same batch size.

    Keras divides each replica's mean loss by the replica count, which is the global mean only
    for equal shares; a partial last batch (say 5 images on 2 replicas: 3 + 2) would weight the
    smaller share's images more. Multiplying the replica's loss by this factor makes the summed
    gradient exactly that of the global-batch mean (one scalar all-reduce per step).
    """
    local = tf.cast(batch, tf.float32)
    context = tf.distribute.get_replica_context()
    total = context.all_reduce(tf.distribute.ReduceOp.SUM, local) if context else local
    return tf.math.divide_no_nan(local * _replicas(), total)


def _class_indices(labels=None, class_index=None, probabilities=None) -> tf.Tensor:
    """``[B]`` int32 class indices from one-hot/sparse labels, an int/array, or the prediction."""
    if labels is not None:
        labels = tf.convert_to_tensor(labels)
        if labels.shape.rank is not None and labels.shape.rank >= 2 and labels.shape[-1] != 1:
            return tf.argmax(labels, axis=-1, output_type=tf.int32)
        return tf.reshape(tf.cast(labels, tf.int32), [-1])
    batch = tf.shape(probabilities)[0]
    if class_index is None:
        return tf.argmax(probabilities, axis=-1, output_type=tf.int32)
    index = tf.cast(tf.convert_to_tensor(class_index), tf.int32)
    if index.shape.rank == 0:
        return tf.fill([batch], index)
    return tf.reshape(index, [-1])


def _peak_shortfall(signed: tf.Tensor) -> tf.Tensor:
    """``[B]`` ``relu(ALIVE_MARGIN − max(z) / max|z|)``: 0 for a map whose positive peak is at
    least half its largest magnitude, up to 1.5 for one with no positive value. The scale is not
    differentiated, so the gradient raises the peak instead of shrinking the map."""
    peak = tf.reduce_max(signed, axis=[1, 2])
    scale = tf.stop_gradient(tf.reduce_max(tf.abs(signed), axis=[1, 2]))
    return tf.nn.relu(ALIVE_MARGIN - tf.math.divide_no_nan(peak, scale))


@keras.saving.register_keras_serializable(package="kidney_tf")
class CamFosteringModel(Classifier):
    """Functional classifier trained with a CAM-entropy penalty (see module docstring).

    Build it with :meth:`from_classifier`; it shares (does not copy) the classifier's layers.

    Usage: ``model = CamFosteringModel.from_classifier(classifier, cam_weight=0.1)``.
    """

    def __init__(
        self,
        *args,
        cam_layer: str | None = None,
        cam_weight: float = 0.0,
        cam_method: str = "gradcam++",
        outside_weight: float = 0.0,
        mask_weight: float = 0.0,
        mask_dilation: int = DEFAULT_MASK_DILATION,
        alive_weight: float = 0.0,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        check_choice(cam_method, FOSTERING_CAM_METHODS, "cam_method")
        self._cam_method = cam_method
        self._cam_layer = cam_layer or last_conv_layer_name(self)
        layer = self.get_layer(self._cam_layer)
        if len(layer.output.shape) != 4:
            raise ValueError(
                f"cam_layer {self._cam_layer!r} has output shape {layer.output.shape}; "
                "a CAM layer needs a 4-D [B, H, W, C] output"
            )
        if cam_method in CLOSED_FORM_METHODS:
            self._check_exact_identity()
        if int(mask_dilation) < 0:
            raise ValueError(f"mask_dilation must be >= 0 pixels, got {mask_dilation}")
        self._mask_dilation = int(mask_dilation)
        self._cam_weight = self._outside_weight = self._mask_weight = self._alive_weight = 0.0
        self.cam_weight = cam_weight
        self.outside_weight = outside_weight
        self.mask_weight = mask_weight
        self.alive_weight = alive_weight
        self.ce_loss_tracker = keras.metrics.Mean(name="ce_loss")
        self.cam_entropy_tracker = keras.metrics.Mean(name="cam_entropy")
        self.cam_empty_tracker = keras.metrics.Mean(name="cam_empty")
        self.cam_outside_tracker = keras.metrics.Mean(name="cam_outside")
        self.cam_off_lesion_tracker = keras.metrics.Mean(name="cam_off_lesion")
        self._views = _CamViews(self, layer, cam_method)

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def from_classifier(
        cls,
        model: keras.Model,
        cam_weight: float = 0.1,
        cam_method: str = "gradcam++",
        cam_layer: str | None = None,
        *,
        outside_weight: float = 0.0,
        mask_weight: float = 0.0,
        mask_dilation: int = DEFAULT_MASK_DILATION,
        alive_weight: float = 0.0,
        class_names: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> CamFosteringModel:
        """Wrap a functional classifier (layers shared, weights not copied).

        ``class_names``/``metadata`` default to the classifier's; ``metadata`` is merged over it.
        The classifier needs a Dense layer named ``"logits"`` followed by the softmax output.

        Usage: ``CamFosteringModel.from_classifier(model, cam_weight=0.1, cam_method="gradcam")``.
        """
        inputs = getattr(model, "inputs", None)
        if not inputs:
            raise ValueError(f"model {model.name!r} is not a built functional model")
        if class_names is None:
            class_names = getattr(model, "class_names", None)
        merged = {**(getattr(model, "metadata", None) or {}), **(metadata or {})}
        return cls(
            inputs=inputs[0] if len(inputs) == 1 else inputs,
            outputs=model.outputs[0] if len(model.outputs) == 1 else model.outputs,
            name=name or model.name,
            cam_layer=cam_layer,
            cam_weight=cam_weight,
            cam_method=cam_method,
            outside_weight=outside_weight,
            mask_weight=mask_weight,
            mask_dilation=mask_dilation,
            alive_weight=alive_weight,
            class_names=class_names,
            metadata=merged,
        )

    def as_classifier(self) -> Classifier:
        """A plain :class:`Classifier` over the same layers (e.g. for export or tf-keras-vis).

        Usage: ``plain = model.as_classifier()``.
        """
        return Classifier(
            inputs=self.inputs[0],
            outputs=self.outputs[0],
            name=self.name,
            class_names=self.class_names,
            metadata=self.metadata,
        )

    def _check_exact_identity(self) -> None:
        names = [layer.name for layer in self.layers]
        head = self.layers[names.index(self._cam_layer) + 1 :]
        logits = logits_layer(self)
        between = head[: head.index(logits)] if logits in head else None
        ok = (
            between is not None
            and between
            and isinstance(between[0], keras.layers.GlobalAveragePooling2D)
            and all(isinstance(layer, _EXACT_SAFE_LAYERS) for layer in between)
            and keras.activations.serialize(logits.activation) == "linear"
        )
        if not ok:
            found = ", ".join(layer.name for layer in (between or head))
            raise ValueError(
                f"cam_method={self._cam_method!r} needs a GlobalAveragePooling2D -> [Dropout] -> "
                f"Dense('logits') "
                f"head after {self._cam_layer!r} (found: {found}); use cam_method='gradcam'"
            )

    # -------------------------------------------------------------------------------- properties
    @property
    def cam_layer(self) -> str:
        """Name of the layer whose output the CAMs are computed on."""
        return self._cam_layer

    @property
    def cam_method(self) -> str:
        """``"exact"``, ``"gradcam++"`` or ``"gradcam"``."""
        return self._cam_method

    @property
    def cam_weight(self) -> float:
        """λ, the weight of the CAM-entropy penalty (0 disables it)."""
        return self._cam_weight

    @cam_weight.setter
    def cam_weight(self, value: float) -> None:
        self._set_weight("_cam_weight", "cam_weight", value)

    @property
    def outside_weight(self) -> float:
        """λ_out, the weight of the CAM mass outside the foreground (0 disables it)."""
        return self._outside_weight

    @outside_weight.setter
    def outside_weight(self, value: float) -> None:
        self._set_weight("_outside_weight", "outside_weight", value)

    @property
    def mask_weight(self) -> float:
        """λ_mask, the weight of the CAM mass off the dilated lesion mask (0 disables it)."""
        return self._mask_weight

    @mask_weight.setter
    def mask_weight(self, value: float) -> None:
        self._set_weight("_mask_weight", "mask_weight", value)

    @property
    def alive_weight(self) -> float:
        """λ_alive, the weight of the hinge that keeps the maps' positive peak (0 disables it)."""
        return self._alive_weight

    @alive_weight.setter
    def alive_weight(self, value: float) -> None:
        self._set_weight("_alive_weight", "alive_weight", value)

    @property
    def mask_dilation(self) -> int:
        """Pixels the lesion mask is grown by (square) before ``mask_weight`` measures it."""
        return self._mask_dilation

    def _set_weight(self, attribute: str, name: str, value: float) -> None:
        value = float(value)
        if not value >= 0.0 or value == float("inf"):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if value != getattr(self, attribute):
            # The traced train/test functions bake the weights in; rebuild them on the next call.
            self.train_function = None
            self.test_function = None
        setattr(self, attribute, value)

    @property
    def _penalised(self) -> bool:
        return any(getattr(self, name) > 0 for name in FOSTERING_WEIGHTS)

    # ------------------------------------------------------------------------------------- CAMs
    def _probabilities_and_cams(self, x, *, training: bool, labels=None, class_index=None):
        """One forward pass -> (probabilities, CAMs ``[B, h, w]`` float32, non-negative)."""
        probabilities, signed = self._probabilities_and_signed_cams(
            x, training=training, labels=labels, class_index=class_index
        )
        return probabilities, activate_cams(signed, self._cam_method)

    def _probabilities_and_signed_cams(self, x, *, training: bool, labels=None, class_index=None):
        """One forward pass -> (probabilities, :func:`signed_cams` ``[B, h, w]`` float32)."""
        if self._cam_method in CLOSED_FORM_METHODS:
            features, probabilities = self._views.full(x, training=training)
            indices = _class_indices(labels, class_index, probabilities)
            kernel = tf.cast(tf.convert_to_tensor(logits_layer(self).kernel), tf.float32)
            weights = tf.transpose(tf.gather(kernel, indices, axis=1))  # [B, K]
        else:
            features = tf.cast(self._views.trunk(x, training=training), tf.float32)
            with tf.GradientTape() as inner:
                inner.watch(features)
                logits, probabilities = self._views.head(features, training=training)
                indices = _class_indices(labels, class_index, probabilities)
                score = tf.gather(tf.cast(logits, tf.float32), indices, axis=1, batch_dims=1)
            gradients = inner.gradient(score, features)
            weights = tf.reduce_mean(gradients, axis=[1, 2])  # [B, K]
        return probabilities, signed_cams(features, weights, self._cam_method)

    def class_activation_maps(self, images, class_index=None) -> tf.Tensor:
        """CAMs at the CAM layer's native grid: float32 ``[B, h, w]``, non-negative, unnormalised.

        ``class_index``: None (predicted class), an int (same class for all) or ``[B]`` ints.
        Uses this model's ``cam_method``; graph-safe (usable inside ``tf.function``).

        Usage: ``cams = model.class_activation_maps(images).numpy()``.
        """
        images = tf.convert_to_tensor(images, dtype=tf.float32)
        _, cams = self._probabilities_and_cams(images, training=False, class_index=class_index)
        return cams

    # ------------------------------------------------------------------------------ train/test
    def _split_inputs(self, x):
        """``x`` or a dict ``{"image", "foreground"?, "lesion_mask"?}`` -> (image, fg, lesion)."""
        if not isinstance(x, dict):
            return x, None, None
        if IMAGE_KEY not in x:
            raise ValueError(f"a dict input needs an {IMAGE_KEY!r} entry, got keys {sorted(x)}")
        return x[IMAGE_KEY], x.get(FOREGROUND_KEY), x.get(LESION_KEY)

    def _spatial_terms(self, cams, foreground, lesion):
        """``(outside [B] or None, off_lesion [B] or None, lesion valid [B] or None)``."""
        outside = off = valid = None
        if foreground is not None:
            outside = mass_outside(cams, foreground)
        if lesion is not None:
            lesion = tf.cast(lesion, tf.float32)
            if lesion.shape.rank == 3:
                lesion = lesion[..., tf.newaxis]
            valid = tf.reduce_any(lesion > 0.5, axis=[1, 2, 3])
            if self._mask_dilation:
                size = 2 * self._mask_dilation + 1
                lesion = tf.nn.max_pool2d(lesion, size, strides=1, padding="SAME")
            off = mass_outside(cams, lesion)
        return outside, off, valid

    def _step(self, data, *, training: bool):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if y is None:
            raise ValueError("CamFosteringModel needs labels: the dataset must yield (x, y)")
        x, foreground, lesion = self._split_inputs(x)
        if training and self._outside_weight > 0 and foreground is None:
            raise ValueError(
                "outside_weight > 0 needs the foreground next to the image: "
                "build_datasets(..., with_foreground=True) yields x = {'image', 'foreground'}"
            )
        if training and self._mask_weight > 0 and lesion is None:
            raise ValueError(
                "mask_weight > 0 needs the lesion masks next to the image: "
                "build_datasets(..., with_lesion_masks=True) yields x = {'image', 'lesion_mask'}"
            )
        with_cams = self._penalised or not training
        terms = {}
        if with_cams:
            y_pred, signed = self._probabilities_and_signed_cams(x, training=training, labels=y)
            cams = activate_cams(signed, self._cam_method)
        else:
            y_pred = self(x, training=training)
        ce_loss = self.compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )
        loss = ce_loss
        if with_cams:
            entropy, has_mass = entropy_and_mass(cams)
            outside, off, valid = self._spatial_terms(cams, foreground, lesion)
            terms = {
                "entropy": entropy,
                "empty": 1.0 - tf.cast(has_mass, tf.float32),
                "outside": outside,
                "off_lesion": off,
                "valid": valid,
            }
            penalty = 0.0
            if self._cam_weight > 0:
                penalty += self._cam_weight * _batch_mean(entropy)
            if self._outside_weight > 0:
                penalty += self._outside_weight * _batch_mean(outside)
            if self._mask_weight > 0:
                weights = tf.cast(valid, tf.float32)
                off_mean = tf.reduce_sum(off * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)
                penalty += self._mask_weight * off_mean
            if self._alive_weight > 0:
                penalty += self._alive_weight * _batch_mean(_peak_shortfall(signed))
            if self._penalised:
                # Compiled losses are divided by the replica count (summed across replicas);
                # the penalty is scaled the same way so the total is a global mean.
                loss = ce_loss + tf.cast(penalty / _replicas(), ce_loss.dtype)
        return x, y, y_pred, sample_weight, loss, ce_loss, terms

    def _update_trackers(self, y_pred, loss, ce_loss, terms) -> None:
        batch = tf.shape(y_pred)[0]
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss * _replicas(), sample_weight=batch)
        self.ce_loss_tracker.update_state(ce_loss * _replicas(), sample_weight=batch)
        if terms.get("entropy") is not None:
            self.cam_entropy_tracker.update_state(terms["entropy"])
            self.cam_empty_tracker.update_state(terms["empty"])
        if terms.get("outside") is not None:
            self.cam_outside_tracker.update_state(terms["outside"])
        if terms.get("off_lesion") is not None:
            self.cam_off_lesion_tracker.update_state(
                terms["off_lesion"], sample_weight=tf.cast(terms["valid"], tf.float32)
            )

    def _logs(self, x, y, y_pred, sample_weight, terms):
        logs = self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        for key, tracker in (
            ("entropy", self.cam_entropy_tracker),
            ("empty", self.cam_empty_tracker),
            ("outside", self.cam_outside_tracker),
            ("off_lesion", self.cam_off_lesion_tracker),
        ):
            if terms.get(key) is None:
                logs.pop(tracker.name, None)
        return logs

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Under a tf.distribute strategy, Keras' TF trainer draws one batch from a fresh fit
        # iterator only to learn the input shapes, then restarts it: a reshuffling stream then
        # trains on its *second* shuffle order (unlike one device), and the draw all-reduces
        # the batch across workers. The dataset's element spec carries the same shapes.
        # (Only the image of a dict input goes through the model itself.)
        # On one device Keras leaves the optimizer's and the metrics' variables to the first
        # trace of train_step / test_step, and variables created inside a trace make TensorFlow
        # trace the whole step a second time (~20 s for ResNet-50 on a CPU, at every fit): build
        # them up front, as Keras does under a strategy.
        adapter = getattr(iterator, "data_adapter", None)
        if data_batch is None and adapter is not None:
            spec = adapter.get_tf_dataset().element_spec
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(spec)
            image = self._split_inputs(x)[0]
            data_batch = (image, y) if sample_weight is None else (image, y, sample_weight)
        if data_batch is None:
            return super()._maybe_symbolic_build(iterator=iterator)
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def train_step(self, data):
        with tf.GradientTape() as tape:
            x, y, y_pred, sample_weight, loss, ce_loss, terms = self._step(data, training=True)
            objective = loss
            if _replicas() > 1:
                share = _global_batch_share(tf.shape(y_pred)[0])
                objective = loss * tf.cast(share, loss.dtype)
            scaled = (
                self.optimizer.scale_loss(objective)
                if hasattr(self.optimizer, "scale_loss")
                else objective
            )
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        self._update_trackers(y_pred, loss, ce_loss, terms)
        return self._logs(x, y, y_pred, sample_weight, terms)

    def test_step(self, data):
        x, y, y_pred, sample_weight, loss, ce_loss, terms = self._step(data, training=False)
        self._update_trackers(y_pred, loss, ce_loss, terms)
        return self._logs(x, y, y_pred, sample_weight, terms)

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self(self._split_inputs(x)[0], training=False)

    # ---------------------------------------------------------------------------- serialisation
    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            cam_layer=self._cam_layer,
            cam_weight=self._cam_weight,
            cam_method=self._cam_method,
            outside_weight=self._outside_weight,
            mask_weight=self._mask_weight,
            mask_dilation=self._mask_dilation,
            alive_weight=self._alive_weight,
        )
        return config


__all__ = ["CamFosteringModel"]
