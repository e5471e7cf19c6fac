"""Signal helpers shared by ingest, features and training: lead names, resampling, storage."""
