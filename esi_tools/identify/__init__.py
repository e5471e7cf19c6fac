"""ECG biometrics: identify a person from a later recording (closed-set search) and verify pairs (same person?)."""
