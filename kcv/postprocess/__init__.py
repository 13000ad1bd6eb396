"""Post-processing of per-pixel probability maps."""
