"""Dagster wiring: resources, partitions, assets, checks, sensors and schedules.

Importing this package silences, by exact message, the Dagster API-lifecycle
warnings that we have checked and accept (Dagster 1.13.27), so that the UI's
console and every CLI command start clean. Any other warning still shows.
"""

import warnings

import dagster as dg

CHECKED_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    (
        dg.BetaWarning,
        r"Parameter `allow_nonexistent_upstream_partitions` of initializer `TimeWindowPartitionMapping.__init__`",
        # window_stats and anomalies read the day before (and the 7 days before) theirs; on
        # the first partitions those days do not exist, and the asset must still run.
        "the first days' lookback needs it; tests materialize the first partition",
    ),
    (
        dg.BetaWarning,
        r"Parameter `backfill_policy` of function `asset`",
        # BackfillPolicy.single_run() makes a range one run, which the assets read and
        # write as whole partitions: a range costs one DuckDB pass instead of N runs.
        "single-run backfills are how the lake assets are meant to be backfilled",
    ),
    (
        dg.PreviewWarning,
        r"Specifying a partitions_def on an AssetCheckSpec",
        # The lake's checks run per partition, so the UI shows each day's result on that day;
        # the check tests would catch a change of behaviour in a patch release.
        "per-partition check results are what the lake's checks mean",
    ),
    (
        dg.BetaWarning,
        r"Parameter `owners` of initializer `SensorDefinition.__init__`",
        # We set no owners: Dagster itself passes owners=[] when Definitions binds the
        # resources to micro_batch_sensor's job (SensorDefinition.with_attributes).
        "raised by Dagster's own code, not by an API we call",
    ),
    (
        dg.BetaWarning,
        r"Parameter `include_sources` of function `AssetSelection.groups`",
        # Dagster's parser of selection strings ("group:lake", used by `iot-platform backfill
        # --select`) passes include_sources itself; we never do.
        "raised by Dagster's own code, not by an API we call",
    ),
)

for _category, _message, _why in CHECKED_WARNINGS:
    warnings.filterwarnings("ignore", message=_message, category=_category)
