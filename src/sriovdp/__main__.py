"""``python -m sriovdp`` runs the command line."""

from sriovdp.cli import main

raise SystemExit(main())
