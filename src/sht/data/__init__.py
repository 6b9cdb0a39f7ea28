"""Data: annotation formats, canonical crops and augmentation, degradation, heatmaps, generated faces."""
