"""Service functions: the one layer the admin API, the CLI and (later) the console call."""
