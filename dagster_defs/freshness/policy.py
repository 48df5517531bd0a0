"""Dagster's freshness policy of an asset: a hint the UI shows, not the SLO.

Dagster 1.13 evaluates it in its freshness daemon (no runs), from the time of the asset's last
materialization only: it means "new data arrived within the window", so on a quiet source it
turns FAIL although nothing is late. The SLO is the freshness check (`dagster_defs.freshness.check`).
"""

from datetime import timedelta

import dagster as dg


def freshness_policy(minutes: float) -> dg.FreshnessPolicy:
    """Dagster's time-window policy: FAIL when the asset has not materialized for `minutes`.

    Dagster refuses windows under a minute, so shorter SLOs get one minute. WARN at half the
    window when that is at least a minute (silver 1 min, gold 2.5 min; none for bronze).
    """
    fail = timedelta(minutes=max(minutes, 1.0))
    warn = fail / 2 if fail / 2 >= timedelta(minutes=1) else None
    return dg.FreshnessPolicy.time_window(fail_window=fail, warn_window=warn)
