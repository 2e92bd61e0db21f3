"""``augserve bench``: a harness, the runner, and one module per family of cases (contention, encoded
files, fair sharing)."""
