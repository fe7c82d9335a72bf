"""a1: an open implementation of the InternVLA-A1 robot policy."""

__version__ = "0.1.0"
