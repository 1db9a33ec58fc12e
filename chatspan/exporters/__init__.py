"""Span exporters that store what chat spans carry."""
