"""Everything that touches files: input stores (``store``, with every input
check, and ``checks`` for the pair), the reference format, ``samples.zarr``,
locked and staged publishing (``output``), and synthetic data (``synth``).
"""
