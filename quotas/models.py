"""Admission control: resource types, quotas, reservations and budgets."""

from django.db import models


class ResourceType(models.Model):
    """A kind of resource the platform creates and bills: a VM, a GiB of storage, a GiB of egress, ..."""

    class Metering(models.TextChoices):
        # Billed for time held: usage is measured in unit-hours (a VM for 3 h = 3 vm-hours).
        DURATION = "duration", "unit-hours (held over time)"
        # Billed per unit consumed: usage is a count (10 GiB of egress = 10).
        COUNT = "count", "units (consumed)"

    code = models.SlugField(max_length=50, unique=True)
    display_name = models.CharField(max_length=100)
    unit = models.CharField(max_length=30, help_text="The unit of one quantity: vm, vCPU, GiB, ...")
    metering = models.CharField(max_length=10, choices=Metering.choices, default=Metering.DURATION)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code

    @property
    def billing_unit(self) -> str:
        """What a usage quantity of this type counts: 'vm-hours', 'GiB-hours' or 'GiB'."""
        return f"{self.unit}-hours" if self.metering == self.Metering.DURATION else self.unit
