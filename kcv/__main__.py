"""``python -m kcv`` = ``kcv``."""

from kcv.cli import main

main()
