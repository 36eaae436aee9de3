"""What the tests and the benchmarks share: request corpora, a load runner, free ports.

Nothing here is imported by the server or the models (as ``detectron2.utils.testing``).
"""
