"""Everything that crosses the process boundary: input stores (``store``, with
every single-store check; ``faults``, which read errors are retried;
``chunks``, stores that miss chunks; ``npfile``, .npy/.npz inputs;
``textfile`` and ``parquet``, CSV and Parquet files for ``convert``), the
checks of the pair and of streamed values (``checks``), the reference format
(``reference``), ``samples.zarr`` (``samples``), staged publishing
(``output``) under the output directory's ``lock``, s3:// and gs:// backends
and results uploaded to them (``objectstore``), synthetic data
(``synth``), finished results' metrics.json (``results``), oneDNN's bf16
GEMM (``onednn``), and for per-class evaluation the class labels of a set's
rows (``labels``) and its rows split into one store per class (``split``).
"""
