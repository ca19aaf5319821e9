import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from wallets.demo import access_box


class Command(BaseCommand):
    help = "Print how to reach the demo: URLs, logins, the platform key or the command to make one."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--wait", type=int, default=0, metavar="SECONDS",
            help="First wait, at most this long, until the web server answers /healthz on PORT.",
        )
        parser.add_argument(
            "--ready-dir", type=Path, metavar="DIR",
            help="With --wait, also wait for the files 'worker' and 'beat' that they create there when up.",
        )

    def handle(self, *args, **options) -> None:
        base_url = f"http://127.0.0.1:{settings.PORT}"
        if options["wait"] > 0:
            # Printed after the start-up logs of the web server, the worker and beat, so it stays in view.
            deadline = time.monotonic() + options["wait"]
            waiting = [f"{base_url}/healthz"] if not web_answers(f"{base_url}/healthz", deadline) else []
            if options["ready_dir"]:
                waiting += [name for name in ("worker", "beat") if not file_appears(options["ready_dir"] / name, deadline)]
            if waiting:
                self.stderr.write(f"Still not up after {options['wait']} s: {', '.join(waiting)}.")
        self.stdout.write("\n".join(access_box(base_url=base_url)))


def web_answers(url: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.25)
    return False


def file_appears(path: Path, deadline: float) -> bool:
    while not path.exists():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.25)
    return True
