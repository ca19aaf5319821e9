import pytest
from django.test import Client

from wallets.tests.factories import UserFactory, member


@pytest.fixture
def tenant(project):
    """A member of project acme (100 credits)."""
    return member(project, UserFactory(username="tina"))


@pytest.fixture
def browser(client: Client, tenant) -> Client:
    """A Django test client logged in as the tenant."""
    client.force_login(tenant)
    return client
