"""Runs over time: the history file, comparing two runs, gates.

Works on finished results (``metrics.json`` documents, result directories)
and on history lines, never on embeddings: ``history`` (append and read the
one-line-per-run file), ``compare`` (B − A with its standard error, paired
when both runs share the real set), ``record`` (a run's values and standard
errors, from either form), ``gates`` (conditions that fail a run, exit status
4), ``table`` and ``pages`` (the history as a table, CSV, JSON, ``trend.png``
and ``history.html``).
"""
