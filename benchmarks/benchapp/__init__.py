"""A task model for benchmarks, subclassing the StreamTask of whichever implementation is measured."""
