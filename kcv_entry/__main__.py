"""``python -m kcv_entry`` = the ``kcv`` console script."""

from kcv_entry import main

main()
