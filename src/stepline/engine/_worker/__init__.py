"""The worker's execution machinery: leases, calls to apps, on-thread runs, drain and recovery."""
