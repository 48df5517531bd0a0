"""benchmarks/compaction.py end to end on a tiny day: its figures are measured, not made up."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compaction.py"


def test_a_tiny_day_is_compacted_and_read_back_whole():
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--files-per-hour",
            "3",
            "--rows-per-file",
            "9",
            "--repeat",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["rows"] == 24 * 3 * 9
    assert (figures["files_before"], figures["files_after"]) == (72, 24)
    assert figures["read_before_s"] > 0 and figures["compact_rows_per_s"] > 0
