"""One module per pass over the data: its task bodies, graph and stage.

``moments`` (moments, fingerprints, input checks while streaming), ``prune``
(the pruning groups), ``knn`` (exact k-NN radii), ``cross`` (memberships and
per-sample values), ``projection`` (the plots' streamed PCA pass). Every
stage after the moments takes one :class:`~largeemb.passes.context.PassContext`.
"""
