"""Embeddings of every record of a dataset: from an ESI checkpoint, a random-init encoder or handcrafted features."""
