"""Speed: the served ensemble against its own parts and Detectron2's ``DefaultPredictor``.

``run`` is the benchmark (``python -m benchmarks.speed.run --help``); ``components`` and
``eager`` are its in-process baselines (run in the server and dev environments), ``perf``
drives ``perf_analyzer``, ``inputs`` writes the photos and tensors they share, ``report``
writes the report and plot; ``precision``, ``first_request`` and ``postprocess_threads``
are measurements built on them.
"""
