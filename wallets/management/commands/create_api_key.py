from django.core.management.base import BaseCommand, CommandError

from wallets.auth import api_key_create
from wallets.models import Project


class Command(BaseCommand):
    help = "Create a service API key and print it once (alone on the last line)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("--project", help="Slug of the one project the key may act on (default: platform-wide).")

    def handle(self, *args, **options) -> None:
        project = None
        if options["project"]:
            project = Project.objects.filter(slug=options["project"]).first()
            if project is None:
                raise CommandError(f"no project {options['project']!r}")
        api_key, raw_key = api_key_create(name=options["name"], project=project)
        scope = f"project {project.slug}" if project else "platform-wide"
        self.stdout.write(f"Created API key {api_key.name!r} ({scope}). It is shown once; store it now:")
        self.stdout.write(raw_key)
