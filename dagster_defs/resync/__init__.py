"""Resync from Dagster: the ``table_resync`` job (``binlake resync`` as a job) and the sensor that
records a resync's end and asks silver to sweep."""
