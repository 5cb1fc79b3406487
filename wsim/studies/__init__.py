"""Studies built on the engine and the GPU models: CS vs GPU comparison (``compare``), parameter sweeps
(``sweep``), faults, cost, plots, and the wafer model's calibration (``calibration``)."""
