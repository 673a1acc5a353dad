"""Turning CAMs into pixel pseudo masks: dense CRF and IRN's random walk."""
