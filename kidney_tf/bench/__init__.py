"""Benchmarks of kidney_tf: input pipeline vs training, TF vs OpenCV crop, CAM-fostering overhead,
explanation vs prediction cost, map statistics and training memory (``kidney-tf benchmark``).

Usage::

    from kidney_tf.bench import BenchSettings, format_report, run_suite
    report = run_suite(BenchSettings.from_preset("quick"), out="bench.json")
    print(format_report(report))
"""

from kidney_tf.bench.core import Figure, Goal, SectionResult
from kidney_tf.bench.suite import PRESETS, SECTIONS, BenchSettings, format_report, run_suite

__all__ = [
    "PRESETS",
    "SECTIONS",
    "BenchSettings",
    "Figure",
    "Goal",
    "SectionResult",
    "format_report",
    "run_suite",
]
