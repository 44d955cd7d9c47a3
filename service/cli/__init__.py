"""The command line and `remediate dev`."""
