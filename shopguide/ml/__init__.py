"""Machine learning for shopguide: plain Python, torch and transformers; no Django."""
