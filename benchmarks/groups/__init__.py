"""Benchmark groups. Each module has ``run(cfg) -> dict`` returning one group's JSON section."""
