"""Exact fast paths of the engine: same math as the plain computation, less work per step.

- :mod:`.folding`: batch norm folded into a shadow copy of the model.
- :mod:`.image_conv`: the image gradient through a strided RGB stem as one stride-1 conv.
- :mod:`.sparse_backward`: no backward pass through concatenated branches nobody reads.
- :mod:`.cpu_allocator`: keep freed activation memory for reuse on Linux CPUs.

Each has a test against the plain computation (``tests/optvis/fast/``).
"""
