"""What runs inside Triton's Python-backend stub: the per-request contract, steps and stages.

May import ``triton_python_backend_utils`` (``backend``), torch and OpenVINO (``stages``),
``vision`` and the contract; nothing here is imported by the client or the gateway.
"""
