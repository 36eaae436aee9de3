"""What the tests and the benchmarks share: request corpora, a load runner, free ports.

Nothing here is imported by the server or the models (as ``detectron2.utils.testing``), and
the wheel leaves it out: it needs ``requests`` and scikit-image, which no extra declares.
"""
