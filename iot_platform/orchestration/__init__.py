"""Dagster wiring: resources, partitions, assets, checks, sensors and schedules."""
