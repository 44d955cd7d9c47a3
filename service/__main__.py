"""`python -m service` runs the same command line as `remediate`."""

from service.cli.main import entry

if __name__ == "__main__":
    entry()
