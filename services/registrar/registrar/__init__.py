"""registrar package."""
