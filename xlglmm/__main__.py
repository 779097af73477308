"""python -m xlglmm ... (same as the `xlglmm` command)."""
from .cli import main

raise SystemExit(main())
