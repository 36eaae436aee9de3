"""Your own model: a synthetic dataset (shapes.py) and Detectron2 training (train.py)."""
