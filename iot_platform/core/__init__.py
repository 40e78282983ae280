"""Pure computation: schemas, simulation, validation, windows, detectors, parsing."""
