"""Health of the pipeline in Dagster: the connector health sensor (restarts, alerts, a red tick
while capture is stopped) and alerts for failed runs."""
