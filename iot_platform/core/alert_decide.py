"""What the alert sensor decides, as a pure function of its cursor and what it sees.

The sensor passes in a signature of the lake (what detection last wrote), the
outbox rows that are due and the clock; a run of the alerts job is requested
when the lake changed, a notification is due, or ``heartbeat_s`` has passed
since the last run (deadman and repeat checks need time to pass, not data).
The run key is deterministic, so a re-evaluated tick never requests twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

HEARTBEAT_S = 60


@dataclasses.dataclass(frozen=True)
class AlertCursor:
    lake_sig: str = ""
    due_sig: str = ""
    last_run_us: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> AlertCursor:
        return cls(**json.loads(text)) if text else cls()


@dataclasses.dataclass(frozen=True)
class AlertDecision:
    run_key: str | None
    cursor: AlertCursor
    reason: str


def decide_alert_run(cursor: AlertCursor, now_us: int, lake_sig: str, due: list[str], heartbeat_s: int = HEARTBEAT_S) -> AlertDecision:
    """``due``: idempotency keys (with attempt counts) of the outbox rows due now."""
    due_sig = hashlib.sha256("\n".join(sorted(due)).encode()).hexdigest()[:12] if due else ""
    why = []
    if lake_sig != cursor.lake_sig:
        why.append("new detection output")
    if due and due_sig != cursor.due_sig:
        why.append(f"{len(due)} notification(s) due")
    if now_us - cursor.last_run_us >= heartbeat_s * 1_000_000:
        why.append("heartbeat")
    if not why:
        return AlertDecision(None, cursor, "nothing new: lake unchanged, no notification due, heartbeat not yet due")
    key = "alerts-" + hashlib.sha256(f"{lake_sig}|{due_sig}|{now_us // (heartbeat_s * 1_000_000)}".encode()).hexdigest()[:16]
    return AlertDecision(key, AlertCursor(lake_sig, due_sig, now_us), ", ".join(why))
