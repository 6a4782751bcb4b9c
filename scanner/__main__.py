"""``python -m scanner`` is the ``zooscan`` command."""

from scanner.cli import main

raise SystemExit(main())
