"""esi-tools: turn raw 12-lead ECGs into an ECG-text foundation model (after ESI, Yu, Guo & Sano 2024)."""

__version__ = "0.1.0"
