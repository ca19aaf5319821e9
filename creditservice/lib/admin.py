"""Admin building blocks shared by every app.

Staff read amounts, quantities and rates the way the API writes them ("260.9", "100", "0.04"), never as
the integers the database holds (260900000 micro-credits): an admin names its integer columns at a fixed
scale in `fixed_point_fields`, and ReadableAdmin shows them so in lists and on detail pages (read-only or
not) and takes them typed as decimals in forms. A database constraint a form breaks is told in words.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.options import InlineModelAdmin
from django.db.models import BaseConstraint
from django.utils.text import capfirst

from .money import (
    MAX_QUANTITY_MICROS,
    MoneyError,
    format_amount,
    format_micros,
    format_rate,
    parse_amount,
    parse_micros,
    parse_rate,
)


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


@dataclass(frozen=True)
class Scale:
    """How staff read and type an integer column at a fixed scale: money's formatter and parser."""

    show: Callable[[int], str]
    parse: Callable[[str], int]

    def input(self, **kwargs: Any) -> FixedPointInput:
        return FixedPointInput(parse=self.parse, show=self.show, **kwargs)


# Staff may type zero (a budget or a quota of nothing); the API's grammar and bounds otherwise.
CREDITS = Scale(show=format_amount, parse=lambda text: parse_amount(text, allow_zero=True))
QUANTITY = Scale(show=format_micros, parse=lambda text: parse_micros(text, allow_zero=True, maximum=MAX_QUANTITY_MICROS))
RATE = Scale(show=format_rate, parse=parse_rate)


def fixed_point_column(attribute: str, description: str, show: Callable[[int], str]):
    """A list or read-only column showing an integer at a fixed scale as a readable decimal ("0.3", not 300000)."""

    def column(*args) -> str:
        # Called as a method (model_admin, obj) when set on a class, or with obj alone when set on an instance.
        value = getattr(args[-1], attribute)
        return "-" if value is None else show(value)

    column.short_description = description
    column.admin_order_field = attribute
    return column


def _shown(name: str) -> str:
    """The read-only column standing in for a fixed-point field (a model field's name would show the integer)."""
    return f"{name}__readable"


class ReadableAdmin:
    """A mixin for ModelAdmin and inlines: `fixed_point_fields` ({"amount": CREDITS, ...}) are shown as
    decimals in the list and wherever the page shows them read-only, and typed as decimals in forms (a form's
    own declared field wins). Constraint names in form errors become the messages of CONSTRAINT_MESSAGES."""

    fixed_point_fields: dict[str, Scale] = {}

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for name, scale in self.fixed_point_fields.items():
            label = capfirst(self.model._meta.get_field(name).verbose_name)
            setattr(self, _shown(name), fixed_point_column(name, label, scale.show))

    def _renamed(self, names, *, every: bool, read_only=()) -> list:
        """names with each fixed-point field replaced by its read-only column (all of them, or those read_only)."""
        seen, result = set(), []
        for name in names:
            if isinstance(name, str) and name in self.fixed_point_fields and (every or name in read_only):
                name = _shown(name)
            if name not in seen:
                seen.add(name)
                result.append(name)
        return result

    def _read_only_page(self, request, obj) -> bool:
        """The page shows every field read-only: a view-only user, or money that nobody edits here."""
        if obj is None:
            inline = isinstance(self, InlineModelAdmin)
            return not (self.has_add_permission(request, obj) if inline else self.has_add_permission(request))
        return not self.has_change_permission(request, obj)

    def get_list_display(self, request):
        return self._renamed(super().get_list_display(request), every=True)

    def get_readonly_fields(self, request, obj=None):
        read_only = super().get_readonly_fields(request, obj)
        if self._read_only_page(request, obj):
            return self._renamed([*read_only, *self.fixed_point_fields], every=True)
        return self._renamed(read_only, every=False, read_only=read_only)

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if self._read_only_page(request, obj):
            return self._renamed(fields, every=True)
        return self._renamed(fields, every=False, read_only=super().get_readonly_fields(request, obj))

    def get_fieldsets(self, request, obj=None):
        if self.fieldsets:
            return [(title, {**options, "fields": self._renamed(options["fields"], every=self._read_only_page(
                request, obj), read_only=super().get_readonly_fields(request, obj))})
                for title, options in super().get_fieldsets(request, obj)]
        return super().get_fieldsets(request, obj)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        scale = self.fixed_point_fields.get(db_field.name)
        if scale is None:
            return super().formfield_for_dbfield(db_field, request, **kwargs)
        return scale.input(required=not db_field.blank, label=capfirst(db_field.verbose_name),
                           help_text=db_field.help_text)

    def get_form(self, request, obj=None, **kwargs):
        return with_constraint_messages(super().get_form(request, obj, **kwargs))

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        formset.form = with_constraint_messages(formset.form)
        return formset


class ReadOnlyAdmin(ReadableAdmin, admin.ModelAdmin):
    """Money and history are read-only for staff: they change only through services."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# --- Constraint names → messages ----------------------------------------------------------------------
# Django tells a broken CHECK (and a conditional UNIQUE) in a form as 'Constraint "name" is violated.';
# each app registers what its constraints mean (register_constraint_messages) and admin forms say that.
CONSTRAINT_MESSAGES: dict[str, str] = {}
_VIOLATED = re.compile(
    re.escape(str(BaseConstraint.default_violation_error_message)).replace(re.escape("%(name)s"), "(?P<name>.+?)"))


def register_constraint_messages(messages: dict[str, str]) -> None:
    CONSTRAINT_MESSAGES.update(messages)


def constraint_message(message: str) -> str:
    """A form error naming a constraint → the message registered for it (unknown names stay as they are)."""
    match = _VIOLATED.fullmatch(message)
    return CONSTRAINT_MESSAGES.get(match["name"], message) if match else message


class ConstraintMessagesForm:
    """A ModelForm mixin: errors from the model's constraints read as their registered messages."""

    def _post_clean(self):
        super()._post_clean()
        for errors in self.errors.values():
            errors.data = [constraint_message(message) for message in errors]


def with_constraint_messages(form_class: type[forms.BaseForm]) -> type[forms.BaseForm]:
    if issubclass(form_class, ConstraintMessagesForm):
        return form_class
    return type(form_class.__name__, (ConstraintMessagesForm, form_class), {"__module__": form_class.__module__})
