"""Turn ECG collections (PTB-XL, MIMIC-IV-ECG, PhysioNet Challenge, any WFDB tree) into dataset artifacts."""
