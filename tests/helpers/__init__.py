"""Test helpers: real photos, cached exports, Triton servers, Detectron2 references."""
