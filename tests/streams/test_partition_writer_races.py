"""Two partition writers (two workers, each with its own view of the manifest) flushing the same
offsets at the same moment: each offset is listed once, and no listed file is replaced."""

import threading
from pathlib import Path

from binlake.bronze.coverage import is_intact
from binlake.bronze.manifest import Manifest
from binlake.storage import LakeStorage
from streams.partition_writer import RotationReason
from tests.support.partition_writer import FakeClock, change, make_writer, read_back

ROUNDS = 15


def _race(lake: Path) -> None:
    storage = LakeStorage.from_url(str(lake))
    # Both start at offset 0, so both name their file after it; their files end apart.
    stalled = make_writer(storage, Manifest(storage), FakeClock(), flush_rows=1000)
    owner = make_writer(storage, Manifest(storage), FakeClock(), flush_rows=1000)
    for offset in range(20):
        stalled.add(offset, change(id_=offset))
    for offset in range(12):
        owner.add(offset, change(id_=offset))
    start = threading.Barrier(2)

    def flush(writer) -> None:
        start.wait()
        writer.close(RotationReason.SHUTDOWN)

    threads = [threading.Thread(target=flush, args=(w,)) for w in (stalled, owner)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    entries = Manifest(storage).entries()
    listed = sorted(o for e in entries for o in read_back(storage, e).column("_offset").to_pylist())
    assert listed == list(range(20)), entries
    for entry in entries:
        assert is_intact(storage, entry), f"{entry.path} was replaced after it was listed"
        offsets = read_back(storage, entry).column("_offset").to_pylist()
        assert offsets == list(range(entry.first_offset, entry.last_offset + 1))


def test_racing_writers_list_each_offset_once_and_never_replace_a_listed_file(tmp_path) -> None:
    for round_ in range(ROUNDS):
        _race(tmp_path / f"lake{round_}")
