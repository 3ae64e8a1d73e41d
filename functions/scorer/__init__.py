"""The scoring Lambda: read an ECG file, cut it into model windows, score them, store the result."""
