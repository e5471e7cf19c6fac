"""BM25 retrieval of cardiology knowledge per ECG record: tokenise, index, query, run."""
