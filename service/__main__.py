"""`python -m service` runs the same command line as `remediate`."""

from service.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
