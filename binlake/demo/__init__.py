"""`binlake demo`: a small shop schema, a workload of inserts, updates and deletes, and a summary
of how the lake followed it."""
