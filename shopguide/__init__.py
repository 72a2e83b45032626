"""shopguide: an AI shopping guide for Django shops."""

__version__ = "0.1.0"
