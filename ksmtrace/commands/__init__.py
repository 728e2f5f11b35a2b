"""Subcommands of the ksmtrace command line, one module each."""
