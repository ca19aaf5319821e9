"""Admin building blocks shared by every app."""

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin

from .money import MoneyError


class ReadOnlyAdmin(admin.ModelAdmin):
    """Money and history are read-only for staff: they change only through services."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class FixedPointInput(forms.CharField):
    """An integer column at a fixed scale (micro-credits, micro-units, pico-credits) typed and shown as a
    decimal ("12.5"). parse: one of money's parsers (text → integer, raising MoneyError); show: its formatter."""

    def __init__(self, *, parse: Callable[[str], int], show: Callable[[int], str], **kwargs: Any):
        self.parse, self.show = parse, show
        super().__init__(**kwargs)

    def prepare_value(self, value):
        return self.show(value) if isinstance(value, int) else value

    def to_python(self, value):
        value = super().to_python(value)
        if value in ("", None):
            return None
        try:
            return self.parse(value)
        except MoneyError as exc:
            raise forms.ValidationError(str(exc)) from None


def fixed_point_column(attribute: str, description: str, show: Callable[[int], str]):
    """A list or read-only column showing an integer at a fixed scale as a readable decimal ("0.3", not 300000)."""

    def column(model_admin, obj) -> str:
        value = getattr(obj, attribute)
        return "-" if value is None else show(value)

    column.short_description = description
    column.admin_order_field = attribute
    return column
