"""Caption audit: is a caption true to its ECG? Claims extracted with a documented lexicon, checked against
the record's measurements and recorded statements (see lexicon.py, claims.py, truth.py)."""
