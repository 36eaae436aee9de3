"""Thread pools of pytest's own process, kept across code that sets them as a stub's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def thread_pools_kept() -> Iterator[None]:
    """Put this process's thread pools back as they were on leaving.

    A model's ``initialize`` sets its process's pools as a stub's: preprocess and postprocess
    put every numeric library on one thread (``serving.backend.stay_on_one_thread``: OpenCV,
    and through threadpoolctl OpenBLAS and the OpenMP that torch computes on), the detector
    sets torch's threads to its instance's.  Here that process is pytest's: left so, every
    test after these ran its Detectron2 references on one thread, where the stubs run on two
    (the families' parity then differed by a pixel at a tie, and the accuracy module's
    Detectron2 pass ran on one core).
    """
    import cv2
    import torch
    from threadpoolctl import threadpool_limits

    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    with threadpool_limits(limits=None):  # restores what threadpoolctl sees (OpenMP, BLAS)
        yield
    torch.set_num_threads(torch_threads)
    cv2.setNumThreads(cv2_threads)
