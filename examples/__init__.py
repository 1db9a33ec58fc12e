"""Example chat apps, installed with chatspan as ``chatspan.examples``."""
