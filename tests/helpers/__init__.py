"""Helpers the tests share: running the commands in this process or as real processes."""
