"""How task graphs run: ``graph`` (building and running a pass's graph),
``session`` (the current run: executor, checkpoints, counts), ``executor``
(the executor contract and the in-process one), ``cluster``
(dask.distributed), ``threads`` (one BLAS/faiss thread per task),
``checkpoint`` and ``progress``.
"""
