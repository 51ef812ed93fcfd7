"""Evaluation: metrics, calibration, CAM statistics, figures, reports and report comparison.

Modules (import what you need; nothing heavy is imported here):

- ``report``: ``evaluate_model`` (metrics.json, predictions.csv, figures, report.html/.md),
  ``fit_model_temperature``;
- ``calibration``: ECE (15 bins), reliability data, temperature scaling, ``apply_temperature``;
- ``compare``: ``compare_reports`` (comparison.json/.md/.html, paired_overlays.png);
- ``figures``: the PNG figures, (training curves: ``kidney_tf.utils.plots``);
- ``dataset_figures``: class distribution, samples, crop pairs, augmentation examples;
- ``metrics``, ``cam_eval``, ``render``, ``html``, ``schema``: the building blocks.

Usage::

    from kidney_tf.evaluation.report import evaluate_model
    metrics = evaluate_model(model, "runs/base/split.csv", out_dir="reports/base")
"""
