"""Latency on real hardware: timing static networks (``measure``) and what ``anas
profile`` reports (``profile``)."""
