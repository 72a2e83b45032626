"""Which trained version serves: activation (checksum verified) and roll back."""

from django.db import transaction
from django.utils import timezone

from .artifacts import ArtifactError, verify
from .models import RecommenderModel, ServingState
from .signals import model_activated


class ActivationError(Exception):
    """A version that cannot serve; the active version is left as it was."""


def active_model():
    return RecommenderModel.objects.filter(is_active=True).first()


def activate(model):
    """Make ``model`` the one active version after checking its files are intact."""
    if model.status != RecommenderModel.Status.READY:
        raise ActivationError(f"Version {model.version} is {model.status}, not ready; it cannot serve.")
    try:
        verify(model.folder, model.checksum)
    except ArtifactError as exc:
        raise ActivationError(f"Version {model.version} cannot be activated: {exc}") from exc
    with transaction.atomic():
        RecommenderModel.objects.select_for_update().filter(is_active=True).exclude(pk=model.pk).update(is_active=False)
        model.is_active, model.activated_at = True, timezone.now()
        model.save(update_fields=["is_active", "activated_at"])
        ServingState.bump(epoch=True)
        transaction.on_commit(lambda: model_activated.send(sender=RecommenderModel, model=model))
    return model


def previous_model():
    """The version that was active before the current one, or None."""
    current = active_model()
    return (
        RecommenderModel.objects.filter(status=RecommenderModel.Status.READY, activated_at__isnull=False)
        .exclude(pk=getattr(current, "pk", None))
        .order_by("-activated_at")
        .first()
    )


def roll_back():
    """Re-activate the version that was active before the current one; return it."""
    previous = previous_model()
    if previous is None:
        raise ActivationError("There is no earlier active version to roll back to.")
    return activate(previous)
