"""Staff screens of gateway admission.

Metered routes: staff with the gateway model permissions add (gateway.add_meteredroute), change
(change_meteredroute), delete (delete_meteredroute) or only see them (view_meteredroute), the
permissions the routes API checks too. Charges are money history: read-only.
"""

from django import forms
from django.contrib import admin
from django.db import transaction
from rest_framework import serializers

from creditservice.lib.admin import FixedPointInput, ReadOnlyAdmin, fixed_point_column
from creditservice.lib.money import format_amount, parse_amount
from quotas.models import ResourceType

from . import selectors
from .models import GatewayCharge, MeteredRoute
from .serializers import MeteredRouteSerializer


class MeteredRouteForm(forms.ModelForm):
    price = FixedPointInput(parse=parse_amount, show=format_amount, help_text="Credits per call, e.g. 0.002.")

    class Meta:
        model = MeteredRoute
        fields = ["method", "path_prefix", "resource_type", "price"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "resource_type" in self.fields:
            self.fields["resource_type"].queryset = ResourceType.objects.filter(metering=ResourceType.Metering.COUNT)

    def clean_path_prefix(self) -> str:
        # The API's rule for a prefix, in one place (the serializer).
        value = self.cleaned_data["path_prefix"]
        try:
            return MeteredRouteSerializer().validate_path_prefix(value)
        except serializers.ValidationError as exc:
            raise forms.ValidationError(exc.detail) from None


@admin.register(MeteredRoute)
class MeteredRouteAdmin(admin.ModelAdmin):
    form = MeteredRouteForm
    list_display = ["path_prefix", "method", "resource_type", "price_column", "updated_at"]
    list_filter = ["method", "resource_type"]
    search_fields = ["path_prefix"]
    list_select_related = ["resource_type"]
    price_column = fixed_point_column("price", "price (credits per call)", format_amount)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        # In force on this worker at once; the others read routes again within GATEWAY_ROUTE_CACHE_SECONDS.
        transaction.on_commit(selectors.clear_route_cache)

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        transaction.on_commit(selectors.clear_route_cache)

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset)
        transaction.on_commit(selectors.clear_route_cache)


@admin.register(GatewayCharge)
class GatewayChargeAdmin(ReadOnlyAdmin):
    list_display = ["id", "project", "request_id", "route", "amount_column", "created_at"]
    list_select_related = ["project", "route"]
    raw_id_fields = ["project", "route"]
    search_fields = ["request_id"]
    show_full_result_count = False
    amount_column = fixed_point_column("amount", "amount (credits)", format_amount)
