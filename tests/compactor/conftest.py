"""Real bronze files written the way the bronze worker writes them (shared with dagster_defs)."""

from binlake.settings import Settings
from tests.dagster_defs.conftest import bronze, settings  # noqa: F401 - fixtures


def with_retention(base: Settings, days: float | None = 2.0, hours: float = 1.0) -> Settings:
    """`base` with `compactor.bronze_retention_days` and `superseded_retention_hours` set."""
    compactor = base.compactor.model_copy(
        update={"bronze_retention_days": days, "superseded_retention_hours": hours}
    )
    return base.model_copy(update={"compactor": compactor})
