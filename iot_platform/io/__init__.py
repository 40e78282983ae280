"""I/O adapters: the Parquet lake, the landing spool, DuckDB, serial ports."""
