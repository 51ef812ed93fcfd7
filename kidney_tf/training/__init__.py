"""kidney_tf.training: losses and the CAM-fostering model.

Importing this package registers the package's serialisable Keras classes (models, layers,
losses), so ``keras.models.load_model(path, safe_mode=True)`` works afterwards.

Usage::

    from kidney_tf.training import CamFosteringModel, WeightedCrossEntropy
"""

from kidney_tf.training.fostering import CamFosteringModel
from kidney_tf.training.losses import WeightedCrossEntropy, balanced_class_weights

__all__ = ["CamFosteringModel", "WeightedCrossEntropy", "balanced_class_weights"]
