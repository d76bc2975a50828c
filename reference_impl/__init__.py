"""The streamspec reference implementation: a correct Django streaming-task coordinator."""
