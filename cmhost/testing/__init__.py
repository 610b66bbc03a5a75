"""Testing against cmhost: a cmhost for the tests (`CmhostServer`), fresh accounts, the
virtual clock, faults, and the pytest plugin (`cmhost.testing.pytest_plugin`, loaded through
the `pytest11` entry point) whose fixtures use them."""
