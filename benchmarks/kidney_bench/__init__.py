"""Benchmarks of kidney_tf: input pipeline vs training, TF vs OpenCV crop, CAM-fostering overhead,
explanation vs prediction cost, map statistics and training memory (``kidney-tf benchmark``).

Written over kidney_tf's public API and kept outside the installed package (as keras-cv keeps
its ``benchmarks/``): importable with ``benchmarks/`` on ``sys.path``, which
``python benchmarks/bench_*.py``, pytest (``pythonpath`` in setup.cfg) and ``kidney-tf benchmark``
arrange.

Usage::

    from kidney_bench import BenchSettings, format_report, run_suite
    report = run_suite(BenchSettings.from_preset("quick"), out="bench.json")
    print(format_report(report))
"""

from kidney_bench.core import Figure, Goal, SectionResult, is_benchmark_report
from kidney_bench.suite import PRESETS, SECTIONS, BenchSettings, format_report, run_suite

__all__ = [
    "PRESETS",
    "SECTIONS",
    "BenchSettings",
    "Figure",
    "Goal",
    "SectionResult",
    "format_report",
    "is_benchmark_report",
    "run_suite",
]
