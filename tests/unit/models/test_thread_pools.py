"""Initialising a model here leaves pytest's thread pools as they were (helpers.thread_pools)."""

from __future__ import annotations

import cv2
import torch

from d2_triton.serving import backend
from helpers.thread_pools import thread_pools_kept


def test_a_stubs_one_thread_setting_does_not_outlive_the_test():
    before = (torch.get_num_threads(), cv2.getNumThreads())
    with thread_pools_kept():
        backend.stay_on_one_thread()  # what preprocess and postprocess do in initialize
        torch.set_num_threads(1)  # what a one-thread detector instance does
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (1, 1)
    assert (torch.get_num_threads(), cv2.getNumThreads()) == before
