"""Benchmarks: perf_analyzer sweeps of the ensemble and its models, with in-process
baselines (bare TorchScript, pre/post alone, Detectron2's eager predictor) in the same run.

    python -m benchmarks.run --help
"""
