"""Explaining classifiers: CAMs and saliency maps, their statistics, and their faithfulness.

- ``kidney_tf.explain.cams``: ``compute_cams`` / ``explain_batch`` / ``CamExplainer``
  (Grad-CAM, Grad-CAM++, Layer-CAM, Score-CAM, SmoothGrad through tf-keras-vis).
- ``kidney_tf.explain.statistics``: the single definition of map statistics (entropy, radius,
  SNR, pointing game, energy in mask, IoU, outside-foreground mass, shortcut warnings).
- ``kidney_tf.explain.faithfulness``: deletion / insertion AUC against a random-order baseline.

Submodules are imported explicitly (they load TensorFlow).

Usage::

    from kidney_tf.explain.cams import explain_batch
    from kidney_tf.explain.statistics import summarize_maps
    result = explain_batch(model, images, method="gradcam++")
    summary = summarize_maps(result.maps)
"""
