"""Built-in models: ``echo`` and ``transcribe`` (Deepgram-compatible streaming speech-to-text)."""
