import pytest


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("staff", "staff@example.com", "pw")
    client.force_login(user)
    return client


def pytest_configure(config):
    # Two torch threads stall when another process is busy; tests use one.
    import torch

    torch.set_num_threads(1)
