"""Plots: training curves, confusion matrices, overlays."""
