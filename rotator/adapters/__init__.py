"""Adapters: the I/O edges implementing rotator.ports."""
