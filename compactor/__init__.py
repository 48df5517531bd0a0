"""Small-file compaction of closed bronze hours, and expiry of old bronze.

``plan`` finds the hours worth compacting, ``rewrite`` writes one group of files as few sorted
files and swaps them in through the manifest, ``digest`` proves no row changed, ``expiry`` drops
files past ``compactor.bronze_retention_days`` through the manifest, ``retention`` deletes
replaced and expired files once readers cannot need them, ``run`` does all of it for a lake.
"""
