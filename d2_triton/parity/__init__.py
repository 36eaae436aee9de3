"""The parity rule: what "the same answer as Detectron2" means, in one place.

- ``rule``: pairing two answers instance by instance, and the tolerances (box, score, cut,
  logits) that the exporter's stage check and the parity comparisons share.
- ``prediction``: Detectron2's own answer for one image (the reference).
- ``detections``: a served answer against the reference, instance by instance, with the
  staged export's allowances counted (``compare``, ``ParityFigures``, ``Cut``).
- ``masks``, ``segments``: the mask rule and the semantic/panoptic rule under it.

numpy and the client's results only (no torch): the tests, ``benchmarks.zoo.run`` and the
exporter use it.  Import the modules themselves: the exporter's stage check needs ``rule``
alone, and the export fingerprint (``d2_triton.testing.fingerprint``) follows imports.
"""
