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


class _LosesOnce(Manifest):
    """A manifest whose first commit attempt loses to another partition's writer: `rival`
    commits just before it."""

    def __init__(self, storage: LakeStorage, rival) -> None:
        super().__init__(storage)
        self.rival = rival

    def _publish(self, seq: int, data: bytes) -> bool:
        if self.rival is not None:
            rival, self.rival = self.rival, None
            rival.close(RotationReason.SHUTDOWN)  # takes number `seq` first
        return super()._publish(seq, data)


def test_a_commit_lost_to_another_partition_does_not_write_its_file_again(storage) -> None:
    rival = make_writer(storage, Manifest(storage), FakeClock(), partition=1)
    for offset in range(5):
        rival.add(offset, change(id_=offset))
    writer = make_writer(storage, _LosesOnce(storage, rival), FakeClock())
    for offset in range(8):
        writer.add(offset, change(id_=100 + offset))
    writer.close(RotationReason.SHUTDOWN)
    entries = Manifest(storage).entries()
    assert sorted((e.partition, e.first_offset, e.last_offset) for e in entries) == [
        (0, 0, 7),
        (1, 0, 4),
    ]
    # Each partition's file written once, though partition 0 planned its commit twice.
    assert len(storage.writes) == 2, storage.writes
