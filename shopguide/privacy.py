"""Forgetting a shopper: their search events go, and the shop is told which sessions were theirs.

Events carry a keyed hash of the session (``shopper_id_for``), never an IP address or the
session key itself, so they are tied to a user only through the user's sessions.
"""

from django.utils.crypto import salted_hmac

from .models import SearchEvent
from .signals import user_forgotten


def shopper_id_for(session_key):
    """The pseudonymous id events carry for a session: a keyed hash, never the key itself."""
    return salted_hmac("shopguide.shopper", session_key).hexdigest()[:32] if session_key else ""


def sessions_of(user):
    """Keys of the stored sessions in which ``user`` is logged in (database-backed sessions)."""
    from django.contrib.sessions.models import Session

    wanted = str(user.pk)
    return [
        session.session_key
        for session in Session.objects.iterator()
        if session.get_decoded().get("_auth_user_id") == wanted
    ]


def forget_user(user):
    """Delete ``user``'s search events; return ``(events deleted, session keys)``."""
    keys = sessions_of(user)
    deleted, _ = SearchEvent.objects.filter(session__in=[shopper_id_for(key) for key in keys]).delete()
    user_forgotten.send(sender=forget_user, user=user, session_keys=keys)
    return deleted, keys
