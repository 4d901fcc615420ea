"""Pieces every classifier trainer shares: augmentation views and self-training."""
