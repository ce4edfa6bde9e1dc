//! Calibration of step-time profiles from live traces, and validation of sim against live.
