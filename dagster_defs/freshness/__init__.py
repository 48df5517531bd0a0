"""Freshness in Dagster over the lag math of `binlake.freshness`: the
freshness check of each asset (`check`) and the sensor evaluating every check (`sensor`)."""
