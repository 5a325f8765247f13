"""`python -m nasrec` runs the CLI (same as the `nasrec` console script)."""

from nasrec.cli import main

main()
