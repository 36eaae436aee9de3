"""Benchmarks: how fast and how accurate the served detectors are, and what the suite costs.

One subpackage per job, each command a module run with ``python -m``:

- ``speed``: ``run`` (perf_analyzer sweeps of the ensemble and its models against the real
  server, with in-process baselines and Detectron2's ``DefaultPredictor`` in the same run),
  ``precision`` (that, once per ``--precision``), ``first_request``,
  ``postprocess_threads``, ``report`` (a folder's report and plot again);
- ``accuracy``: ``run`` (COCO AP of the trained model, Detectron2 against each served
  variant);
- ``load``: ``soak`` (memory under steady load), ``soak_sensitivity`` (the soak's leak
  limit against recordings), ``overload`` (bursts against the front's admission);
- ``zoo``: ``run`` (every model-zoo config exported, served and compared);
- ``records``: ``suite`` (a fresh clone's suite time), ``figures`` (the docs' tables).

``machine`` describes the machine each summary was measured on (CPU model, cores, flags,
class).  Results go under ``benchmarks/results/``.
"""
