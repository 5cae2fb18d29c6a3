"""`python -m vireid` is the same as the `vireid` command."""

from vireid.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
