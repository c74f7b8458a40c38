"""Tests for the smartmeter integration."""
