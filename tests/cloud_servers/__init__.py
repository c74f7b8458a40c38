"""Fake cloud provider APIs (local aiohttp servers) for tests and benchmarks."""
