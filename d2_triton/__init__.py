"""d2-triton: serve Detectron2 detectors on Triton as preprocess -> detector -> postprocess.

The folders say where code runs and what it may import (a test keeps the torch-free rule):

- ``errors``, ``names``, ``carried``, ``model_config``: the contract every tier shares (stdlib
  only).
- ``vision``: image decoding and resizing, detections, label maps (numpy, OpenCV, Pillow,
  pycocotools).
- ``serving``: what runs inside a Triton Python-backend stub (``pb_utils``; torch and
  OpenVINO for the detector's stages).
- ``client``: Triton clients, results, rendering, the CLI (tritonclient; no torch).
- ``gateway``: the REST gateway (FastAPI over ``client``; no torch).
- ``server``: the launcher (tritonserver, its front, the reload watchdog) on the host.
- ``parity``: what "the same answer as Detectron2" means (numpy; no torch).
- ``testing``: what the tests and benchmarks share.
"""

__version__ = "0.1.0"
