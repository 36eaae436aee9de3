"""Image and detection numerics with Detectron2's semantics: decode, resize, boxes, masks, labels.

May import numpy, OpenCV, Pillow, pycocotools and the contract; never torch or tritonclient.
"""
