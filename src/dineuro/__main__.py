"""``python -m dineuro``: the ``dineuro`` command, for environments without its script on PATH."""

from dineuro.cli import main

if __name__ == "__main__":
    main()
