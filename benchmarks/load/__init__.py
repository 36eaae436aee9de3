"""Load: memory under a long steady load, and bursts against the front's admission.

``soak`` (its limit calibrated by ``soak_sensitivity``) and ``overload``.
"""
