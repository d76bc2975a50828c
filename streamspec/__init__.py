"""streamspec's application layer: the ``streamspec`` command, the regression corpus and baselines,
the mutant matrix, the reports and the standalone reproductions, and the pytest plugin.

It sits on top of the two lower layers and nothing imports it from below (import-linter checks
this, see ``[tool.importlinter]`` in pyproject.toml):

- ``harness``: the engine (scheduler, choice tapes, history, checkers, spec, adapters, probe,
  the run driver);
- ``scenarios``: the search (families, the state machine, the search loop, failures).
"""
