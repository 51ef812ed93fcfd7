"""CAM fostering: a Keras model whose training loss rewards compact class activation maps.

``loss = compiled loss (class-weighted CE) + λ · mean normalised entropy of the TRUE class's CAM``
at the last conv block, with gradients flowing through the CAM. :class:`CamFosteringModel` is a
functional ``keras.Model`` subclass that shares the classifier's layers (never nests them), so
``fit``/``evaluate``/``predict``, callbacks, ``class_weight``, ``steps_per_execution``,
``tf.distribute`` strategies, mixed precision and ``.keras`` saving all work as usual.

CAM methods:

- ``"exact"`` (default): for a ``GAP -> [Dropout] -> Dense("logits")`` head the class activation
  map is exactly ``relu(features @ W[:, c])``; computed from the same forward pass (cheap).
- ``"gradcam++"``: the map Grad-CAM++ (tf-keras-vis, pre-softmax score) gives for the same head,
  in closed form: with a GAP head the logit's gradient is constant over positions, so Grad-CAM++'s
  alphas are uniform and its map is ``features @ relu(W[:, c])``; tf-keras-vis then min-max
  normalises, so the penalised map is shifted to a minimum of 0. Fostering this map lowers the
  entropy that the evaluation measures (the ``"exact"`` map can sharpen through negative class
  weights, which Grad-CAM++ ignores). Same cost as ``"exact"``.
- ``"gradcam"``: Grad-CAM with a nested ``GradientTape`` (gradient of the class logit w.r.t. the
  features, spatially averaged as channel weights); for heads with hidden layers.

λ (``cam_weight``) is a plain Python float stored in the config: with λ = 0 the train step is the
standard Keras one (no CAM ops in the graph). Assigning ``model.cam_weight`` drops the traced step
functions, so the new value takes effect at the next ``fit``/``evaluate`` call.

Reported metrics: ``loss`` (total), ``ce_loss`` (compiled loss incl. regularisers),
``cam_entropy`` (mean normalised entropy of the true-class CAM; in training only when λ > 0,
always in ``evaluate``) and the compiled metrics. The entropy term is an unweighted batch mean;
``class_weight``/sample weights weight the compiled loss only.

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

from kidney_tf.explain.fostering_maps import CLOSED_FORM_METHODS
from kidney_tf.explain.fostering_maps import FOSTERING_CAM_METHODS as CAM_METHODS
from kidney_tf.explain.statistics import normalized_entropy
from kidney_tf.models.builders import Classifier, last_conv_layer_name, logits_layer

# Layers that may sit between the CAM layer's pooling and the logits for the exact CAM identity.
_EXACT_SAFE_LAYERS = (keras.layers.GlobalAveragePooling2D, keras.layers.Dropout)


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
        cam_method: str = "exact",
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if cam_method not in CAM_METHODS:
            raise ValueError(f"cam_method must be one of {CAM_METHODS}, got {cam_method!r}")
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
        self._cam_weight = 0.0
        self.cam_weight = cam_weight
        self.ce_loss_tracker = keras.metrics.Mean(name="ce_loss")
        self.cam_entropy_tracker = keras.metrics.Mean(name="cam_entropy")
        self._views = _CamViews(self, layer, cam_method)

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def from_classifier(
        cls,
        model: keras.Model,
        cam_weight: float = 0.1,
        cam_method: str = "exact",
        cam_layer: str | None = None,
        *,
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
        value = float(value)
        if not value >= 0.0 or value == float("inf"):
            raise ValueError(f"cam_weight must be a finite number >= 0, got {value}")
        if value != self._cam_weight:
            # The traced train/test functions bake λ in; rebuild them on the next call.
            self.train_function = None
            self.test_function = None
        self._cam_weight = value

    # ------------------------------------------------------------------------------------- CAMs
    def _probabilities_and_cams(self, x, *, training: bool, labels=None, class_index=None):
        """One forward pass -> (probabilities, CAMs ``[B, h, w]`` float32, non-negative)."""
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
        features = tf.cast(features, tf.float32)
        weights = tf.cast(weights, tf.float32)
        if self._cam_method == "gradcam++":
            cams = tf.einsum("bhwk,bk->bhw", features, tf.nn.relu(weights))
            return probabilities, cams - tf.reduce_min(cams, axis=[1, 2], keepdims=True)
        cams = tf.nn.relu(tf.einsum("bhwk,bk->bhw", features, weights))
        return probabilities, cams

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
    def _step(self, data, *, training: bool):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if y is None:
            raise ValueError("CamFosteringModel needs labels: the dataset must yield (x, y)")
        penalty = training and self._cam_weight > 0
        with_cams = penalty or not training
        if with_cams:
            y_pred, cams = self._probabilities_and_cams(x, training=training, labels=y)
        else:
            y_pred = self(x, training=training)
        ce_loss = self.compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )
        loss = ce_loss
        entropy = None
        if with_cams:
            entropy = normalized_entropy(cams)
            if self._cam_weight > 0:
                # Compiled losses are divided by the replica count (summed across replicas);
                # the penalty is scaled the same way so the total is a global mean.
                penalty_term = self._cam_weight * tf.reduce_mean(entropy) / _replicas()
                loss = ce_loss + tf.cast(penalty_term, ce_loss.dtype)
        return x, y, y_pred, sample_weight, loss, ce_loss, entropy

    def _update_trackers(self, y_pred, loss, ce_loss, entropy) -> None:
        batch = tf.shape(y_pred)[0]
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss * _replicas(), sample_weight=batch)
        self.ce_loss_tracker.update_state(ce_loss * _replicas(), sample_weight=batch)
        if entropy is not None:
            self.cam_entropy_tracker.update_state(entropy)

    def train_step(self, data):
        with tf.GradientTape() as tape:
            x, y, y_pred, sample_weight, loss, ce_loss, entropy = self._step(data, training=True)
            scaled = (
                self.optimizer.scale_loss(loss) if hasattr(self.optimizer, "scale_loss") else loss
            )
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        self._update_trackers(y_pred, loss, ce_loss, entropy)
        logs = self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        if entropy is None:
            logs.pop(self.cam_entropy_tracker.name, None)
        return logs

    def test_step(self, data):
        x, y, y_pred, sample_weight, loss, ce_loss, entropy = self._step(data, training=False)
        self._update_trackers(y_pred, loss, ce_loss, entropy)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    # ---------------------------------------------------------------------------- serialisation
    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            cam_layer=self._cam_layer, cam_weight=self._cam_weight, cam_method=self._cam_method
        )
        return config


__all__ = ["CAM_METHODS", "CamFosteringModel"]
