"""`python -m orch.server.cli`: the same as the `orch` command."""

from orch.server.cli import main

raise SystemExit(main())
