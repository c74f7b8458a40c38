"""Alerts from meter data: leaks, abnormal use and outages (pure core, no Home Assistant)."""
