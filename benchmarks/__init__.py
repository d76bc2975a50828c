"""streamspec's benchmarks: the reference vs the upstream package vs raw asyncio (see README.md)."""
