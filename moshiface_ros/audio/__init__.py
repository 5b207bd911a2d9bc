"""Audio I/O for the core: WAV files, streaming resampling to the model's frames, test signals."""
