"""End-to-end smoke tests: a real Home Assistant process with the simulated meter."""
