"""Pure computation: schemas, simulation, validation, windows, detectors, parsing (serial lines, import columns, timestamps)."""
