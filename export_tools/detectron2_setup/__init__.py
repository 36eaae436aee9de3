"""Making Detectron2 importable: installing its pinned sources, and the shims they need.

Standard library only, so it runs before torch, d2_triton or the rest of the exporter exist.
"""
