"""What the micro-batch sensor decides, as a pure function of its cursor and what is new.

The sensor passes the clock and the landing zone's listing in; this module
answers with the batch to request (or why not) and the next cursor.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

BATCH_SECONDS = 30
# A landing file requested this long ago and still pending belongs to a run
# that failed for good: request it again.
RE_REQUEST_AFTER_US = 10 * 60 * 1_000_000


@dataclasses.dataclass(frozen=True)
class Cursor:
    sim_until: int | None = None  # batch end (us) of the last simulator batch requested
    landing: dict[str, int] = dataclasses.field(default_factory=dict)  # landing id -> when requested (us)

    def to_json(self) -> str:
        return json.dumps({"sim_until": self.sim_until, "landing": self.landing}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        raw = json.loads(text)
        return cls(sim_until=raw.get("sim_until"), landing={k: int(v) for k, v in raw.get("landing", {}).items()})


@dataclasses.dataclass(frozen=True)
class Batch:
    batch_id: str  # also the run_key: deterministic, so a re-evaluated tick never ingests twice
    until_us: int
    landing: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Decision:
    batch: Batch | None
    cursor: Cursor
    skip_reason: str | None = None


def batch_end(now_us: int, batch_seconds: int = BATCH_SECONDS) -> int:
    step = batch_seconds * 1_000_000
    return now_us // step * step


def decide(
    cursor: Cursor,
    now_us: int,
    simulate: bool,
    pending_landing: list[str],
    batch_seconds: int = BATCH_SECONDS,
) -> Decision:
    """The next micro-batch, if there is new data.

    New data is the simulated fleet's readings since the last batch (batches
    end on a ``batch_seconds`` grid, so their ids are deterministic) and
    landing files not requested yet (or requested so long ago that their run
    must have failed).
    """
    until = batch_end(now_us, batch_seconds)
    pending = set(pending_landing)
    requested = {k: v for k, v in cursor.landing.items() if k in pending}
    new_landing = sorted(k for k in pending if k not in requested or now_us - requested[k] > RE_REQUEST_AFTER_US)
    new_sim = simulate and (cursor.sim_until is None or until > cursor.sim_until)
    if not new_sim and not new_landing:
        why = "no new readings: "
        why += f"simulated fleet batched up to {until}" if simulate else "simulated fleet off"
        why += f"; {len(requested)} landing file(s) already requested" if requested else "; landing zone empty"
        return Decision(None, Cursor(cursor.sim_until, requested), why)
    suffix = hashlib.sha1("\n".join(new_landing).encode()).hexdigest()[:10] if new_landing else "sim"
    batch = Batch(batch_id=f"mb-{until}-{suffix}", until_us=until, landing=tuple(new_landing))
    requested.update({k: now_us for k in new_landing})
    sim_until = until if simulate else cursor.sim_until
    return Decision(batch, Cursor(sim_until, requested))
