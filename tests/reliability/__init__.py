"""Reliability: crash consistency under SIGKILL and races through real HTTP."""
