"""``python -m hpo.cli`` = ``agvp-hpo``."""

from hpo.cli import main

main()
