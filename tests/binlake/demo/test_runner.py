"""`binlake demo` writes its summary however it ends."""

import io
import json

import pytest
from rich.console import Console

from binlake.demo.runner import run_demo
from binlake.errors import BinlakeError


def test_a_demo_that_fails_still_writes_its_summary_with_the_error(settings, tmp_path) -> None:
    # A stack that cannot start: no JVM artifacts cached and no Maven to resolve them.
    local = settings.local.model_copy(
        update={"jvm_cache_dir": tmp_path / "no-cache", "maven": str(tmp_path / "no-mvn")}
    )
    broken = settings.model_copy(update={"local": local})
    path = tmp_path / "out" / "summary.json"
    output = io.StringIO()

    with pytest.raises(BinlakeError) as raised:
        run_demo(
            broken,
            duration_s=1,
            rate_per_s=1,
            catch_up_timeout_s=1,
            seed=1,
            console=Console(file=output, soft_wrap=True),
            summary_path=path,
        )

    summary = json.loads(path.read_text())
    assert summary["completed"] is False
    assert summary["phase"] == "starting the stack"
    assert summary["error"] == f"{type(raised.value).__name__}: {raised.value}"
    assert summary["workload"] == {"transactions": 0, "inserts": 0, "updates": 0, "deletes": 0}
    assert f"summary written to {path}" in output.getvalue()
