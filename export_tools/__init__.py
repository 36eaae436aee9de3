"""Detectron2 -> TorchScript -> Triton model repository (see ``export_tools.exporter``)."""
