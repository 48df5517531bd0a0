"""Freshness in Dagster over the lag math of `binlake.freshness`: the policy (`policy`), the
freshness check of each asset (`check`) and the sensor evaluating every check (`sensor`)."""
