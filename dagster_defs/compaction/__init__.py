"""Bronze small-file compaction in Dagster: the job and the sensor that starts it."""
