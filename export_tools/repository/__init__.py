"""The Triton side of an export: generated configs, a pipeline's files, derived repositories.

May import tritonclient's protobufs and ``d2_triton``'s contract; never torch.
"""
