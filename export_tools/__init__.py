"""Detectron2 -> a Triton model repository: ``export_tools.api.export(ExportSettings)``.

- ``export`` (the command line), ``api`` (the library), ``settings``, ``errors``.
- ``detectron2_setup``: installing Detectron2 and importing it (stdlib only, run before torch
  is imported).
- ``trace``: tracing the model and splitting it into TorchScript and OpenVINO stages (torch).
- ``repository``: Triton configs, writing a pipeline, deriving repositories (no torch).

Importing this package imports nothing: the Docker image runs ``detectron2_setup.install``
before the rest of the code is there.
"""
