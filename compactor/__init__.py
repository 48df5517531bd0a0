"""Small-file compaction of closed bronze hours.

``plan`` finds the hours worth compacting, ``rewrite`` writes one group of files as few sorted
files and swaps them in through the manifest, ``digest`` proves no row changed, ``retention``
deletes replaced files once readers cannot need them, ``run`` does all of it for a lake.
"""
