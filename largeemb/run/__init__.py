"""How task graphs run: ``graph`` (building and running a pass's graph),
``session`` (the current run: executor, checkpoints, counts), ``executor``
(the executor contract and the in-process one), ``cluster``
(dask.distributed; ``job_signals`` keeps the job's signals from the workers it
starts), ``jobqueue`` (worker jobs of a batch system), ``tls`` (encrypted scheduler
traffic), ``threads`` (the thread policy: one BLAS/faiss thread per
task), ``tally`` (what units note about themselves, collected as progress
is), ``checkpoint`` and ``progress``.
"""
