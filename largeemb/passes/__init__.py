"""One module per pass over the data: its task bodies, graph and stage.

``moments`` (moments, fingerprints, input checks while streaming), ``prune``
(the pruning groups), ``knn`` (exact k-NN radii), ``cross`` (memberships and
per-sample values), ``kid`` (the opt-in KID pass), ``pairs`` (the kernel companions'
every-pair passes), ``projection`` (the plots'
streamed PCA pass). Every stage after the moments takes one
:class:`~largeemb.passes.context.PassContext` (``context``: also each task's
tile strategy), and every task reads its rows through ``blocks``.
"""
