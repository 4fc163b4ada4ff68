"""jobsd: a self-hosted daemon that runs scheduled HTTP jobs."""

__version__ = "0.1.0"
