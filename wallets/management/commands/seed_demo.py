from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from creditservice.lib.money import credits_to_micros
from wallets import services
from wallets.auth import api_key_create
from wallets.demo import (
    DEMO_KEY_FILE_NAME,
    DEMO_LOGINS_FILE_NAME,
    demo_key_load,
    demo_key_save,
    demo_logins_save,
    demo_passwords,
    manage_command,
)
from wallets.models import Membership, Project, Transfer


class Command(BaseCommand):
    help = (
        "Seed a demo once: a staff user, a tenant owning one of two funded projects, a platform API key "
        "(kept in var/demo-api-key, mode 0600). The logins are admin/admin and tenant/tenant with DEBUG on; "
        "with DEBUG off each gets a random password, printed once and kept in var/demo-logins (mode 0600)."
    )

    def handle(self, *args, **options) -> None:
        if Project.objects.filter(slug="acme").exists():
            self.stdout.write("Demo data already seeded (project 'acme' exists).")
            if demo_key_load() is None:
                self.stdout.write(f"No platform API key on file for this database; make one with: {manage_command()} create_api_key demo")
            else:
                self.stdout.write(f"Its platform API key is in var/{DEMO_KEY_FILE_NAME}.")
            return
        User = get_user_model()
        # A superuser with a well-known password is for a developer's machine only: with DEBUG off (a
        # server someone may reach) the passwords are random.
        passwords = demo_passwords()
        with transaction.atomic():
            User.objects.create_superuser("admin", "admin@example.com", passwords["admin"])
            tenant = User.objects.create_user("tenant", "tenant@example.com", passwords["tenant"])
            acme = services.project_create(slug="acme", name="Acme Cloud", owner=tenant)
            globex = services.project_create(slug="globex", name="Globex Research")
            Membership.objects.get_or_create(project=globex, user=User.objects.get(username="admin"),
                                             defaults={"role": Membership.Role.OWNER})
            for project, amount in ((acme, "250"), (globex, "1000")):
                services.wallet_credit(project=project, amount=credits_to_micros(amount), reason="Welcome credits",
                                       idempotency_key=f"v1:seed:{project.slug}", actor="system",
                                       system_code="promotions", kind=Transfer.Kind.PROMOTION)
            _, raw_key = api_key_create(name="demo platform key")
        # The key goes to a file only its owner can read, not to the console: make run shows it in the
        # box it prints once the web server answers (manage.py demo_access).
        demo_key_save(raw_key)
        logins = "admin / admin and tenant / tenant (DEBUG is on)"
        if not settings.DEBUG:
            # Printed once here, on stdout (never through logging), and kept beside the key.
            demo_logins_save(passwords)
            logins = (f"admin / {passwords['admin']} and tenant / {passwords['tenant']} (random: DEBUG is off; "
                      f"also in var/{DEMO_LOGINS_FILE_NAME})")
        self.stdout.write(self.style.SUCCESS(
            f"Demo seeded: projects acme and globex; logins {logins}; the platform API key is in "
            f"var/{DEMO_KEY_FILE_NAME}."
        ))
