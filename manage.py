#!/usr/bin/env python
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditservice.settings")
    from django.core.management import execute_from_command_line

    from creditservice.startup import exit_on_config_error

    # No SECRET_KEY, a bad DATABASE_URL, a database that cannot be opened: one line, exit 2.
    with exit_on_config_error():
        execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
