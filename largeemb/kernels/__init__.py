"""Arrays in, arrays out: the NumPy of one block or one block pair. No dask, no
files, and no state kept between calls (what a task keeps lives on objects it holds).

``plan`` cuts rows into blocks; ``roundoff`` holds the unit roundoffs every
bound is proven in; ``distance`` computes float32 tiles with a proven error
bound and exact float64 re-checks; ``bf16`` rounds operands to bfloat16 and
``screen`` holds the tile strategies (float32, or screened by a bf16 GEMM);
``tiles`` cuts block pairs into tiles and ``prune`` gives the group bounds
that skip work. The self pass: ``knn`` (tiles into candidates), ``neighbours``
(a block's candidate lists, their merges and exact radii), ``resolve`` (the
float64 resolution of unproven rows), ``parts`` (each row's exact part radii
for the standard errors). The cross pass: ``cross`` (memberships, decided
pair by pair in ``membership``; P-precision/recall's sums in ``prob``), ``cross_splits`` (the standard errors' split
totals), ``balls`` (the k-NN family's extra ball columns, each with its own
convention, and the counts in them), ``nearest`` (per-sample shortlists),
``settle`` (exact per-sample values); ``shortlist`` is the pairs both passes keep. ``moments``:
the streamed float64 moments and FD; ``highdim``: the dim × dim steps through
the rows of a set with fewer rows than dims; ``kid``: KID's sums; ``pairs``:
the kernel companions' every-pair tiles (Gaussian sums, distance selection, |cos|). Standard
errors that include the radii: ``splits`` (per-row masks and per-split totals
of random halves and quarters) and ``stderr`` (the standard errors from them).
"""
