"""streamctl: run a timed live stream with FFmpeg, with a budget that survives crashes."""

__version__ = "0.1.0"
