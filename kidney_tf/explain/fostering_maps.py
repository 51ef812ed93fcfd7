"""Names of the maps CAM fostering can penalise (TensorFlow-free, for configs and CLIs).

``exact`` and ``gradcam++`` are closed forms for a ``GAP -> [Dropout] -> Dense("logits")`` head;
``gradcam`` works for any head (nested tape). See :mod:`kidney_tf.training.fostering`.
"""

from __future__ import annotations

FOSTERING_CAM_METHODS: tuple[str, ...] = ("exact", "gradcam++", "gradcam")
CLOSED_FORM_METHODS: tuple[str, ...] = ("exact", "gradcam++")
