"""Shared, exact analytics: rows and grids, POC, value area, volume nodes, timeframes (DESIGN)."""
