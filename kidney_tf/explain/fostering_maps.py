"""Names of the maps CAM fostering can penalise (TensorFlow-free, for configs and CLIs).

``exact`` and ``gradcam++`` are closed forms for a ``GAP -> [Dropout] -> Dense("logits")`` head;
``gradcam`` works for any head (nested tape). See :mod:`kidney_tf.training.fostering`.
"""

from __future__ import annotations

FOSTERING_CAM_METHODS: tuple[str, ...] = ("exact", "gradcam++", "gradcam")
CLOSED_FORM_METHODS: tuple[str, ...] = ("exact", "gradcam++")

#: Keys of the dict ``x`` that carries masks next to the image for CAM fostering's spatial terms
#: (``build_datasets(with_foreground=..., with_lesion_masks=...)``); the model's input is the image.
IMAGE_KEY, FOREGROUND_KEY, LESION_KEY = "image", "foreground", "lesion_mask"
#: Pixels the lesion mask is grown by before the lesion-mask term measures the mass off it.
DEFAULT_MASK_DILATION = 4
