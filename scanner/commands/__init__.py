"""One module per ``zooscan`` subcommand. Each exposes ``add_arguments(parser)`` and ``run(args) -> int``."""
