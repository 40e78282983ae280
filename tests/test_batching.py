"""The micro-batch sensor's decision: exact batches and cursors."""

from __future__ import annotations

from iot_platform.core.batching import RE_REQUEST_AFTER_US, Cursor, decide

S = 1_000_000
T0 = 1_704_240_000 * S  # 2024-01-03T00:00:00Z


def test_first_tick_requests_a_batch_up_to_the_30s_grid():
    d = decide(Cursor(), T0 + 47 * S, simulate=True, pending_landing=[])
    assert d.batch is not None
    assert d.batch.until_us == T0 + 30 * S
    assert d.batch.batch_id == f"mb-{T0 + 30 * S}-sim"
    assert d.cursor == Cursor(sim_until=T0 + 30 * S, landing={})


def test_same_grid_slot_again_is_skipped_with_a_reason():
    c = Cursor(sim_until=T0 + 30 * S)
    d = decide(c, T0 + 59 * S, simulate=True, pending_landing=[])
    assert d.batch is None
    assert d.skip_reason == f"no new readings: simulated fleet batched up to {T0 + 30 * S}; landing zone empty"
    assert d.cursor == c


def test_re_evaluating_a_tick_gives_the_same_run_key():
    a = decide(Cursor(sim_until=T0), T0 + 31 * S, True, ["cap/a.parquet"])
    b = decide(Cursor(sim_until=T0), T0 + 31 * S, True, ["cap/a.parquet"])
    assert a.batch == b.batch
    assert a.batch.batch_id.startswith(f"mb-{T0 + 30 * S}-") and not a.batch.batch_id.endswith("-sim")


def test_landing_files_are_requested_once_then_again_only_if_their_run_failed():
    d1 = decide(Cursor(), T0, simulate=False, pending_landing=["cap/a.parquet"])
    assert d1.batch.landing == ("cap/a.parquet",)
    d2 = decide(d1.cursor, T0 + 60 * S, simulate=False, pending_landing=["cap/a.parquet"])
    assert d2.batch is None
    assert d2.skip_reason == "no new readings: simulated fleet off; 1 landing file(s) already requested"
    d3 = decide(d1.cursor, T0 + RE_REQUEST_AFTER_US + 1, simulate=False, pending_landing=["cap/a.parquet"])
    assert d3.batch.landing == ("cap/a.parquet",)


def test_ingested_files_leave_the_cursor():
    c = Cursor(sim_until=T0, landing={"cap/a.parquet": T0})
    d = decide(c, T0 + 10 * S, simulate=True, pending_landing=[])
    assert d.cursor.landing == {}


def test_cursor_round_trips_through_json():
    c = Cursor(sim_until=5, landing={"x/y.parquet": 7})
    assert Cursor.from_json(c.to_json()) == c
    assert Cursor.from_json(None) == Cursor()
