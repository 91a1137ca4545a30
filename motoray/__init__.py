"""motoray: raw frames in, training-ready image datasets out, on Ray."""

__version__ = "0.1.0"
