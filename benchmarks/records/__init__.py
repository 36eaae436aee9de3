"""Records: the suite's time on a fresh clone, and the docs' tables from committed results.

``suite`` and ``figures``.
"""
