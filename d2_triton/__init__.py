"""d2-triton: serve Detectron2 detectors on Triton as preprocess -> detector -> postprocess.

The logic the Triton models share (image decoding and resizing, box and mask transforms,
label maps, request options) lives here once; `models/*/1/model.py` are thin Triton glue.
"""

__version__ = "0.1.0"
