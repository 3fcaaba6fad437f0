"""Helpers the tests share: servers, sample data, traffic, faults, paths."""
