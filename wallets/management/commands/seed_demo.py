from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from creditservice.lib.money import credits_to_micros
from wallets import services
from wallets.auth import api_key_create
from wallets.models import Membership, Project, Transfer


class Command(BaseCommand):
    help = "Seed a demo: a staff user, a tenant owning one of two funded projects, a platform API key."

    def handle(self, *args, **options) -> None:
        if Project.objects.filter(slug="acme").exists():
            self.stdout.write("Demo data already seeded (project 'acme' exists); nothing to do.")
            return
        User = get_user_model()
        with transaction.atomic():
            User.objects.create_superuser("admin", "admin@example.com", "admin")
            tenant = User.objects.create_user("tenant", "tenant@example.com", "tenant")
            acme = services.project_create(slug="acme", name="Acme Cloud", owner=tenant)
            globex = services.project_create(slug="globex", name="Globex Research")
            Membership.objects.get_or_create(project=globex, user=User.objects.get(username="admin"),
                                             defaults={"role": Membership.Role.OWNER})
            for project, amount in ((acme, "250"), (globex, "1000")):
                services.wallet_credit(project=project, amount=credits_to_micros(amount), reason="Welcome credits",
                                       idempotency_key=f"v1:seed:{project.slug}", actor="system",
                                       system_code="promotions", kind=Transfer.Kind.PROMOTION)
            _, raw_key = api_key_create(name="demo platform key")
        base = f"http://127.0.0.1:{settings.PORT}"
        self.stdout.write(self.style.SUCCESS("Demo seeded."))
        self.stdout.write(f"  staff:  admin / admin     -> {base}/admin/")
        self.stdout.write(f"  tenant: tenant / tenant   -> {base}/portal/ (owns project 'acme')")
        self.stdout.write("  platform API key (shown once, store it now):")
        self.stdout.write(raw_key)
