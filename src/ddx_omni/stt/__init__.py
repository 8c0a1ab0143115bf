"""Speech: Deepgram-compatible live and pre-recorded speech-to-text over parakeet-mlx or pocketsphinx."""
