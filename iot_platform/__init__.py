"""iot-platform: a batch-and-micro-batch data platform for IoT sensor fleets.

Layout: ``core`` is pure computation (no Dagster, no pyserial, no environment),
``io`` holds the adapters (Parquet lake, landing spool, DuckDB, serial ports),
``orchestration`` is the Dagster wiring, ``cli`` the ``iot-platform`` command.
"""

__version__ = "0.1.0"
