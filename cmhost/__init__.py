"""cmhost: a self-hosted AWS OpsWorks CM (2016-11-01) control plane."""

__version__ = "0.1.0"
