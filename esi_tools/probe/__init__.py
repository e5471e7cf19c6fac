"""Downstream evaluation of embeddings: label tasks, honest splits, linear probe / fine-tune / zero-shot, metrics."""
