"""Silver: the current state of each captured table, with reconciliation checks."""
