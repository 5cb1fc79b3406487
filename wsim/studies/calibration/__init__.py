"""Published CS-2 measurements and the calibration of the wafer compute model against them."""
