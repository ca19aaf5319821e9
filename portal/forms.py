"""The top-up form: an amount of credits within the configured bounds and a one-time form token."""

import secrets

from django import forms

from creditservice.lib.money import MoneyError, parse_amount

from .selectors import TopUpLimits
from .templatetags.portal import credits


def new_form_token() -> str:
    """One token per rendered form: a double submit of that form is one Checkout Session."""
    return secrets.token_urlsafe(18)


class TopUpForm(forms.Form):
    amount = forms.CharField(max_length=40, label="Amount (credits)")
    token = forms.RegexField(regex=r"^[A-Za-z0-9_-]{16,64}$", widget=forms.HiddenInput)
    # "Save this card for automatic top-ups" (owners only, checked by the view) and the version of the
    # terms the owner was shown beside it: ticking it is the consent to that text.
    save_card = forms.BooleanField(required=False)
    terms_version = forms.CharField(required=False, max_length=20, widget=forms.HiddenInput)

    def __init__(self, *args, limits: TopUpLimits, **kwargs):
        super().__init__(*args, **kwargs)
        self.limits = limits

    def clean_amount(self) -> int:
        """Micro-credits, exact; a bad or out-of-range amount is an error shown beside the field."""
        try:
            micros = parse_amount(self.cleaned_data["amount"])
        except MoneyError as error:
            raise forms.ValidationError(f"Enter an amount in credits, for example 25: it {error}.")
        if not self.limits.minimum <= micros <= self.limits.maximum:
            raise forms.ValidationError(
                f"Top-ups are between {credits(self.limits.minimum)} and {credits(self.limits.maximum)} credits."
            )
        return micros
