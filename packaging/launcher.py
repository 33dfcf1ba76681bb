"""Entry point of the packaged app (PyInstaller needs a script, not `-m desktop`)."""
from desktop.__main__ import main

raise SystemExit(main())
