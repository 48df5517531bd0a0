"""One compaction pass over a lake: expire old bronze (when a retention is set), compact every
closed hour, then delete replaced and expired files past their retention, and bronze files no
entry lists (orphans of lost commit races and crashes) once they are old.

What the Dagster job and ``binlake compact`` call. A group that fails is reported and left as it
was; the other groups go on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from binlake.bronze.data_files import delete_orphans, orphans
from binlake.bronze.manifest import Manifest, ManifestEntry
from binlake.errors import BinlakeError
from binlake.settings import Settings
from binlake.storage import LakeStorage
from compactor.expiry import Expiry, expire_bronze, expiring_files
from compactor.plan import CompactionGroup, compaction_groups
from compactor.retention import delete_replaced_files, expired_replaced_files
from compactor.rewrite import Compacted, compact_group

log = logging.getLogger(__name__)

ORPHAN_MIN_AGE_HOURS = 24.0


@dataclass
class CompactionReport:
    compacted: list[Compacted] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (group, error)
    expired: list[Expiry] = field(default_factory=list)
    deleted_files: int = 0
    deleted_bytes: int = 0
    orphans_deleted: int = 0

    def summary(self) -> dict[str, object]:
        expired_files = [f for e in self.expired for f in e.files]
        return {
            "groups_compacted": len(self.compacted),
            "files_replaced": sum(c.input_files for c in self.compacted),
            "files_written": len(self.compacted),
            "rows": sum(c.entry.rows for c in self.compacted),
            "input_bytes": sum(c.input_bytes for c in self.compacted),
            "output_bytes": sum(c.entry.bytes for c in self.compacted),
            "seconds": round(sum(c.seconds for c in self.compacted), 3),
            "failed": [f"{group}: {error}" for group, error in self.failed],
            "files_expired": len(expired_files),
            "rows_expired": sum(f.rows for f in expired_files),
            "bytes_expired": sum(f.bytes for f in expired_files),
            "replaced_files_deleted": self.deleted_files,
            "replaced_bytes_deleted": self.deleted_bytes,
            "orphans_deleted": self.orphans_deleted,
        }


@dataclass(frozen=True)
class CompactionPlan:
    """What a pass would do now: the groups of closed hours to compact, the files to expire."""

    groups: list[CompactionGroup]
    expiring: list[ManifestEntry]


def plan_pass(settings: Settings, now: datetime | None = None) -> CompactionPlan:
    """What `run_compaction` would do now, from one read of the manifest; changes nothing."""
    now = now or datetime.now(UTC)
    entries = Manifest(LakeStorage.from_settings(settings)).entries()
    days = settings.compactor.bronze_retention_days
    expiring = {} if days is None else expiring_files(entries, now, days)
    return CompactionPlan(
        compaction_groups(entries, now, settings.compactor),
        [file for files in expiring.values() for file in files],
    )


def plan_expiry(settings: Settings, now: datetime | None = None) -> list[ManifestEntry]:
    """The files a pass would expire now (none when bronze is kept forever)."""
    return plan_pass(settings, now).expiring


def run_compaction(settings: Settings, now: datetime | None = None) -> CompactionReport:
    now = now or datetime.now(UTC)
    storage = LakeStorage.from_settings(settings)
    manifest = Manifest(storage)
    report = CompactionReport()
    days = settings.compactor.bronze_retention_days
    if days is not None:  # first, so that no file about to expire is compacted
        report.expired = expire_bronze(manifest, now, days)
    for group in compaction_groups(manifest.entries(), now, settings.compactor):
        try:
            report.compacted.append(compact_group(storage, manifest, group))
        except BinlakeError as exc:
            log.error("compaction of %s failed, files left as they were: %s", group, exc)
            report.failed.append((str(group), str(exc)))
    due = expired_replaced_files(
        manifest.entries(), now, settings.compactor.superseded_retention_hours
    )
    deleted = delete_replaced_files(storage, due)
    report.deleted_files, report.deleted_bytes = deleted.files, deleted.bytes
    report.orphans_deleted = collect_orphans(
        storage, manifest, now, settings.compactor.superseded_retention_hours
    )
    return report


def collect_orphans(
    storage: LakeStorage, manifest: Manifest, now: datetime, retention_hours: float
) -> int:
    """Delete bronze files no manifest entry names (neither listed nor superseded by an entry
    the manifest still holds) and older than `ORPHAN_MIN_AGE_HOURS` (or the superseded
    retention, if longer): files of writers that lost a commit race or crashed before their
    commit, and files expired long ago whose retention line checkpoints no longer keep. The age
    leaves any writer still about to commit its file ample time."""
    entries = manifest.entries()
    named = {e.path for e in entries} | {path for e in entries for path in e.supersedes}
    age_hours = max(ORPHAN_MIN_AGE_HOURS, retention_hours)
    found = orphans(storage, named, older_than=now.timestamp() - age_hours * 3600)
    for orphan in found:
        log.info("deleting unlisted bronze file %s (%d bytes)", orphan.path, orphan.bytes)
    return delete_orphans(storage, found)
