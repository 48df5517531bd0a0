"""Replay from the Dagster UI: the ``consumer_group_replay`` job (``binlake replay`` as a job)."""
