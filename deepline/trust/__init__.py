"""Trust: explanations, robustness to attacks, calibration, and the audit that binds them to
the weights (``deepline explain | attack | calibrate | audit``)."""
