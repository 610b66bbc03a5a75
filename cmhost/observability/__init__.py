"""What a cmhost process tells its operators: Prometheus metrics (files.py, families.py,
database.py) summed over every process of a host; the log lives in cmhost/logs.py."""
