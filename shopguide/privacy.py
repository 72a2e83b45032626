"""Forgetting a shopper: their search events (and the lists an online comparison showed them)
go, and the shop is told which sessions were theirs.

Events carry pseudonymous ids (``shoppers``: a keyed hash of the session or of the user) and a
keyed hash of the client's network, never an IP address or the session key itself, so they are
tied to a user only through the user's sessions and account.
"""

from .models import InterleavedList, SearchEvent
from .shoppers import shopper_id_for, shopper_id_for_user
from .signals import user_forgotten


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
    """Delete ``user``'s search events and the lists an online comparison showed them; return
    ``(events deleted, session keys)``. The search insights keep only sums, named by no one."""
    keys = sessions_of(user)
    ids = [shopper_id_for(key) for key in keys] + [shopper_id_for_user(user)]
    deleted, _ = SearchEvent.objects.filter(session__in=ids).delete()
    InterleavedList.objects.filter(session__in=ids).delete()
    user_forgotten.send(sender=forget_user, user=user, session_keys=keys)
    return deleted, keys
