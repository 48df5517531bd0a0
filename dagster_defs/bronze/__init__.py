"""Bronze: external hourly-partitioned assets, reported by the manifest sensor."""
