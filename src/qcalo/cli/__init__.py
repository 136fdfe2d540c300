"""The ``qcalo`` command-line program: one entry point, one module per subcommand."""
