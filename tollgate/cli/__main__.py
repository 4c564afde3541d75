"""`python -m tollgate.cli` runs the same CLI as the `tollgate` script."""

from tollgate.cli import main

main()
