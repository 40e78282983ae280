-- window_tiles: one row per window of window_stats that is a tile: the windows whose start
-- is a whole number of window lengths after the Unix epoch.
-- Grain: sensor_id, window_start.  Time column: window_start (partition column: date).
--
-- window_stats holds hopping windows (by default 300 s long, one every 60 s, on a grid
-- aligned to the epoch), so a reading counts in every window that contains it and
-- summing n_readings over all windows would count it five times. The tiles do not
-- overlap and, together, hold every reading exactly once; with tumbling windows every
-- window is a tile. When the length divides a day (300 s does), a day's partition
-- holds exactly the tiles of that UTC day, so per-day sums over tiles are exact; with
-- other lengths (a slow sensor's longer windows) a tile straddling midnight belongs
-- to the day it ends in.
-- A view: a filter on date reads only those days of window_stats.
{{ config(materialized='view') }}
SELECT *
FROM {{ source('lake', 'window_stats') }}
-- Integer epoch arithmetic, not date_diff(): on TIMESTAMPTZ that goes through the ICU
-- calendar and is some fifty times slower over a year of windows.
WHERE epoch_us(window_start) % greatest(epoch_us(window_end) - epoch_us(window_start), 1) = 0
