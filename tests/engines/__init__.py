"""Tests of cmhost.engines: PKI, attribute rules, user data, starter kits, embedded driver."""
