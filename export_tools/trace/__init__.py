"""Tracing a Detectron2 model to TorchScript and splitting it into stages for OpenVINO.

May import torch, OpenVINO, Detectron2, ``d2_triton.serving.stages`` and ``vision``.
"""
