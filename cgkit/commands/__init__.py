"""Sub-commands of the ``cgkit`` CLI, one module each (see :mod:`cgkit.cli`)."""
