"""Named failpoints: places where a crash test can make the process die on purpose.

Off by default, and then free: `failpoint(name)` is one test of an empty dict. They are switched
on only by the environment variable `BINLAKE_FAILPOINTS`, read once, when this module is first
imported::

    BINLAKE_FAILPOINTS="bronze.after_rename=0.05,manifest.after_append=0.1"

means: each time the process passes `failpoint("bronze.after_rename")`, it kills itself with
SIGKILL with probability 0.05 (a name alone means probability 1). Before dying it writes one line
`binlake failpoint <name> fired: SIGKILL pid <pid>` to stderr, so a test can tell a self-kill at a
failpoint from any other death. An unknown name or a probability outside [0, 1] is an error at
import: a typo must not silently disable a crash test.

The failpoints, in the order a bronze file goes through them:

* `bronze.mid_write`: half of a file's bytes are in its temporary file (`LakeStorage.write_atomic`
  then writes it in two halves instead of one write);
* `bronze.before_rename`: the temporary file is complete and fsynced, not yet renamed;
* `bronze.after_rename`: the file is durable under its final name, not yet in the manifest;
* `manifest.after_append`: the file's manifest entry is durable, its offsets not yet committed.

One is a fault, not a death: `consumer.lose_fetched` makes the bronze consumer drop the records
of the first fetched batch that holds any, without delivering them and without seeking back,
once per process (`fault(name)` says when), as Faust's consumer was seen to do during a
rebalance; the stall watch (streams/stall_watch.py) must get them delivered.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal

ENV_VAR = "BINLAKE_FAILPOINTS"

MID_WRITE = "bronze.mid_write"
BEFORE_RENAME = "bronze.before_rename"
AFTER_RENAME = "bronze.after_rename"
AFTER_MANIFEST_APPEND = "manifest.after_append"
LOSE_FETCHED = "consumer.lose_fetched"
KILLS = (MID_WRITE, BEFORE_RENAME, AFTER_RENAME, AFTER_MANIFEST_APPEND)
FAULTS = (LOSE_FETCHED,)
KNOWN = KILLS + FAULTS

FIRED_MESSAGE = "binlake failpoint {name} fired: SIGKILL pid {pid}\n"


class FailpointSpecError(ValueError):
    """`BINLAKE_FAILPOINTS` names an unknown failpoint or gives a bad probability."""


def parse(spec: str) -> dict[str, float]:
    """`name=probability[,name=probability...]` -> {name: probability}; '' -> {}."""
    active: dict[str, float] = {}
    for item in spec.replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if name not in KNOWN:
            raise FailpointSpecError(
                f"{ENV_VAR}: unknown failpoint {name!r} (known: {', '.join(KNOWN)})"
            )
        try:
            probability = float(value) if sep else 1.0
        except ValueError:
            raise FailpointSpecError(f"{ENV_VAR}: {item!r}: not a probability") from None
        if not 0.0 <= probability <= 1.0:  # also rejects nan
            raise FailpointSpecError(f"{ENV_VAR}: {item!r}: probability must be in [0, 1]")
        active[name] = probability
    return active


# Parsed once: the environment is read at import, never again.
_ACTIVE: dict[str, float] = parse(os.environ.get(ENV_VAR, ""))
_random = random.Random()


def active() -> dict[str, float]:
    """The failpoints switched on in this process (a copy)."""
    return dict(_ACTIVE)


def armed(name: str) -> bool:
    """True if `name` may fire in this process (for code that must prepare, like a split write)."""
    return name in _ACTIVE


def fault(name: str) -> bool:
    """True the first time the process passes `name` while it is switched on (then never again):
    the caller injects the fault itself instead of dying."""
    if _ACTIVE.pop(name, 0.0) > 0.0:
        with contextlib.suppress(OSError):
            os.write(2, f"binlake fault {name} injected in pid {os.getpid()}\n".encode())
        return True
    return False


def failpoint(name: str) -> None:
    """Pass the failpoint `name`: a no-op unless `BINLAKE_FAILPOINTS` switched it on."""
    if not _ACTIVE:
        return
    probability = _ACTIVE.get(name)
    if probability is None or probability == 0.0:
        return
    if probability >= 1.0 or _random.random() < probability:
        _fire(name)


def _fire(name: str) -> None:
    pid = os.getpid()
    with contextlib.suppress(OSError):  # no stderr: die anyway
        os.write(2, FIRED_MESSAGE.format(name=name, pid=pid).encode())
    os.kill(pid, signal.SIGKILL)
