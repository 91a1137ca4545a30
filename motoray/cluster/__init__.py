"""Helpers that run on the Ray cluster's nodes rather than in the service itself."""
