"""Tests of the pure meter core."""
