"""The model zoo: every config of Detectron2's zoo exported, served and compared.

``run`` (the command), ``rows`` (what each config is and what became of it), ``summary``
(the committed summary) and ``twins`` (configs that are one model at test time).
"""
