"""Gold: aggregates over silver."""
