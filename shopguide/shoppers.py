"""Who a shopper is, as far as shopguide needs to know: a pseudonymous id, the *voter* their
events are weighed as, and the signed tokens that let a page's script post events.

Loading a page is free and so is a new session, so neither can be what makes shoppers
distinct: a network of one's own is what costs. Every event therefore carries a voter:

- events from the shop's pages and server-side events made with a request: a keyed hash of
  the client's network (IPv4 /24, IPv6 /48), never the address itself;
- server-side events made with a user and no request: a keyed hash of the user;
- imported events: a keyed hash of the file's ``session`` (or of the row, without one: the
  file is the shop's own word).

``feedback`` counts distinct voters. The pseudonymous id (a keyed hash of the session, or a
random one for a shopper without a session) is stored with the event as ``session``, so that
forgetting a user can find their events.
"""

import ipaddress
import secrets
from dataclasses import dataclass

from django.core import signing
from django.utils.crypto import salted_hmac

from .conf import shopguide_settings

TOKEN_SALT = "shopguide.shopper-token"
TOKEN_HEADER = "X-Shopguide-Token"
NETWORK_PREFIX = {4: 24, 6: 48}  # bits of an address that one household, office or host holds


class InvalidToken(Exception):
    """A shopper token that was not issued by this shop (or was altered)."""

    code = "bad_shopper_token"


class ExpiredToken(InvalidToken):
    code = "expired_shopper_token"


@dataclass(frozen=True)
class Shopper:
    id: str  # pseudonymous, stored with each event as ``session``
    voter: str  # what the shopper's events are weighed as


def keyed_hash(purpose, value, length=32):
    """A hash of ``value`` keyed with the project's SECRET_KEY: stable, not reversible without it."""
    return salted_hmac(f"shopguide.{purpose}", value).hexdigest()[:length]


def shopper_id_for(session_key):
    """The pseudonymous id events carry for a session: a keyed hash, never the key itself."""
    return keyed_hash("shopper", session_key) if session_key else ""


def shopper_id_for_user(user):
    return keyed_hash("user", str(user.pk))


def client_address(request):
    """The client's address: the connection's (``REMOTE_ADDR``), or, behind ``PROXY_COUNT``
    proxies of the shop's own, the address the outermost of them saw (that many entries
    from the right of ``X-Forwarded-For``; entries further left are the client's word)."""
    proxies = shopguide_settings.PROXY_COUNT
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if proxies and len(forwarded) >= proxies:
        return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR", "")


def network_of(address):
    """The network an address belongs to (``"203.0.113.0/24"``); an unparsable address is its
    own network."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    return str(ipaddress.ip_network(f"{ip}/{NETWORK_PREFIX[ip.version]}", strict=False))


def voter_for_request(request):
    return keyed_hash("network", network_of(client_address(request)))


def shopper_for(request=None, user=None):
    """The ``Shopper`` behind a request (or a user, for server-side events without one)."""
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if session_key:
        shopper_id = shopper_id_for(session_key)
    elif user is not None and user.is_authenticated:
        shopper_id = shopper_id_for_user(user)
    else:
        shopper_id = secrets.token_hex(16)
    return Shopper(shopper_id, voter_for_request(request) if request is not None else shopper_id)


def shopper_token(request):
    """A signed token naming the request's shopper, for the page's tracking script (sent back
    in the ``X-Shopguide-Token`` header); valid for ``SHOPPER_TOKEN_MAX_AGE`` seconds. One per
    request: every strip of a page names the same shopper."""
    token = getattr(request, "_shopguide_token", None)
    if token is None:
        shopper = shopper_for(request)
        token = signing.dumps({"s": shopper.id, "v": shopper.voter}, salt=TOKEN_SALT, compress=False)
        request._shopguide_token = token
    return token


def read_token(token):
    """The ``Shopper`` a token names; ``InvalidToken`` or ``ExpiredToken`` when it cannot be trusted."""
    try:
        payload = signing.loads(token, salt=TOKEN_SALT, max_age=shopguide_settings.SHOPPER_TOKEN_MAX_AGE)
    except signing.SignatureExpired as exc:
        raise ExpiredToken("The shopper token has expired; reload the page for a new one.") from exc
    except signing.BadSignature as exc:
        raise InvalidToken("The shopper token was not issued by this shop.") from exc
    if not (isinstance(payload, dict) and all(isinstance(payload.get(name), str) for name in ("s", "v"))):
        raise InvalidToken("The shopper token was not issued by this shop.")
    return Shopper(payload["s"], payload["v"])
