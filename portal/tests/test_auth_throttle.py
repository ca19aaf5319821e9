"""Sign-in is throttled against guessing (django-axes): LOGIN_FAILURE_LIMIT wrong passwords for one username
from one address lock that pair out (429), even with the right password; other addresses and users go on."""

import pytest
from axes.models import AccessAttempt
from django.conf import settings

from wallets.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    """Each attempt checks a password: a fast hasher keeps these tests at a second or two."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

RIGHT = "pw-for-tests-1"


def _try(client, password, username="ann", address="203.0.113.7", path=LOGIN):
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=address)


def _fail_to_the_limit(client, **where) -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _try(client, "guess", **where).status_code == 200  # the form again, with its error
    assert _try(client, "guess", **where).status_code == 429  # the failure that reaches the limit locks


def test_the_limit_is_a_few_attempts():
    assert 3 <= settings.AXES_FAILURE_LIMIT <= 10
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]


def test_after_the_limit_even_the_right_password_is_refused(client):
    UserFactory(username="ann")
    _fail_to_the_limit(client)
    response = _try(client, RIGHT)
    assert response.status_code == 429
    assert "Too many failed attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_lockout_is_per_username_and_address(client):
    UserFactory(username="ann")
    UserFactory(username="bob")
    _fail_to_the_limit(client)
    assert _try(client, RIGHT, address="198.51.100.9").status_code == 302
    client.logout()
    assert _try(client, RIGHT, username="bob").status_code == 302


def test_a_successful_sign_in_clears_the_count(client):
    UserFactory(username="ann")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _try(client, "guess")
    assert _try(client, RIGHT).status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _try(client, "guess")
    assert _try(client, RIGHT).status_code == 302


def test_the_admin_sign_in_is_throttled_too(client):
    UserFactory(username="root", is_staff=True, is_superuser=True)
    _fail_to_the_limit(client, username="root", path="/admin/login/")
    assert _try(client, RIGHT, username="root", path="/admin/login/").status_code == 429


def test_no_password_is_stored_with_a_failed_attempt(client):
    UserFactory(username="ann")
    _try(client, "my-secret-guess-42")
    attempt = AccessAttempt.objects.get()
    assert "my-secret-guess-42" not in f"{attempt.post_data} {attempt.get_data}"
