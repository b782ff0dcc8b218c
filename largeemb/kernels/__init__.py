"""Arrays in, arrays out: the NumPy of one block or one block pair. No dask, no files.

``plan`` cuts rows into blocks, ``distance`` computes float32 tiles with a
proven error bound and exact float64 re-checks, ``moments`` the streamed
float64 moments and FD, ``knn`` the self pass's candidates and radii,
``cross`` the cross pass's memberships and shortlists, ``prune`` the group
bounds that skip work, ``tiles`` the cutting of block pairs into tiles.
"""
