"""`python -m dynvm` is the `dynvm` command."""

from dynvm.cli import main

main()
