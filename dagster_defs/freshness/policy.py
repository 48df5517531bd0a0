"""What freshness means on binlake's assets: lag behind the source, not time since a run.

Dagster 1.13's ``FreshnessPolicy`` cannot say that. Its freshness daemon re-evaluates every
policy every 30 s from the asset's last materialization only (``TimeWindowFreshnessPolicy``: FAIL
when the newest materialization is older than the window; ``CronFreshnessPolicy``: none since a
cron tick) and writes a ``FreshnessStateChange`` whenever its verdict differs from the stored
state, so a state reported by a sensor (``instance.report_runless_asset_event``) is overwritten on
the daemon's next pass; the evaluators are a closed internal table and the UI shows an asset
without a policy as "not applicable". On a quiet source nothing materializes, so a time window
turns red although nothing is late. binlake's assets therefore carry no Dagster freshness policy:
their freshness is the lag-based freshness check (`dagster_defs.freshness.check`, evaluated by
the freshness sensor), which the UI shows as the asset's check health, and which the freshness
alerts follow. The asset descriptions say so (`freshness_note`).
"""

from binlake.freshness import Layer


def freshness_note(layer: Layer, slo_minutes: float) -> str:
    """The sentence an asset's description ends with, saying what its freshness means."""
    return (
        f"Freshness is {layer}'s lag behind the newest source commit (the freshness checks, "
        f"SLO {slo_minutes:g} min): an idle source stays fresh, a stalled pipeline turns red. "
        "No Dagster freshness policy: its time window counts time since the last "
        "materialization."
    )
