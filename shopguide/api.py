"""The REST API under ``/api/shopguide/`` (include ``shopguide.urls``).

- ``GET recommendations/?q=&limit=&exclude=``: anyone; recommendations for a search.
- ``POST events/``: the shop's own pages, with the shopper token they were rendered with
  (``X-Shopguide-Token``); impressions and clicks, one event or a list of up to 100, stored
  all or nothing; throttled per client. No IP address is stored.
- ``GET models/``, ``GET training-runs/``: staff only; versions and training runs, read-only.

Every error has one shape: ``{"error": {"status", "code", "message", "fields"}}``, where
``fields`` maps each rejected field to its messages (a 400 names the field).
"""

import json
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.cache import caches
from django.core.signals import setting_changed
from django.db import transaction
from django.http import HttpResponse
from django.utils import timezone
from django.utils.translation import get_language
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, inline_serializer
from rest_framework import authentication, generics, serializers, status
from rest_framework.exceptions import AuthenticationFailed, ParseError, PermissionDenied, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView, exception_handler

from .catalog_source import get_catalog_source
from .conf import shopguide_settings
from .models import RecommenderModel, SearchEvent, TrainingRun, normalized_for_column
from .online import credit_clicks
from .rules import rulebook
from .services import (
    MAX_LIMIT,
    MAX_QUERY_LENGTH,
    LocalCache,
    after_response,
    normalized_query,
    recommend,
    serving_state,
)
from .shoppers import TOKEN_HEADER, InvalidToken, Shopper, client_address, read_token

MAX_EVENTS_PER_REQUEST = 100
MAX_POSITION = 32767  # places in a list an event may name (the column's range)
MAX_BODY = 128 * 1024  # bytes: 100 events with the longest fields fit
MAX_EXCLUDED = 50


def error_body(status_code, code, message, fields=None):
    return {"error": {"status": status_code, "code": code, "message": message, "fields": fields or {}}}


def shopguide_exception_handler(exc, context):
    """DRF's handling, answered in shopguide's one error shape."""
    response = exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    if isinstance(exc, ValidationError):
        fields = detail if isinstance(detail, dict) else {"non_field_errors": detail}
        names = ", ".join(fields)
        response.data = error_body(response.status_code, "invalid", f"Invalid input: {names}.", fields)
    else:
        message = detail.get("detail", "") if isinstance(detail, dict) else str(detail)
        code = getattr(getattr(detail, "get", lambda key: None)("detail"), "code", None) or exc.default_code
        response.data = error_body(response.status_code, code, str(message))
    return response


class ErrorSerializer(serializers.Serializer):
    """The one error shape (documented in the schema for every error an endpoint answers)."""

    class Detail(serializers.Serializer):
        status = serializers.IntegerField()
        code = serializers.CharField(help_text='"invalid", "parse_error", "throttled", "not_found", ...')
        message = serializers.CharField()
        fields = serializers.DictField(
            child=serializers.ListField(child=serializers.CharField()),
            help_text='Each rejected field and its messages ("2.product" for the third event of a list).',
        )

    error = Detail()


class ShopguideSchema(AutoSchema):
    """The OpenAPI operation of a shopguide view, with the errors it answers (its
    ``error_statuses``) documented in the one error shape."""

    def _get_response_bodies(self, direction="response"):
        bodies = super()._get_response_bodies(direction)
        for status_code in getattr(self.view, "error_statuses", ()):
            bodies.setdefault(str(status_code), self._get_response_for_code(ErrorSerializer, str(status_code)))
        return bodies


class StaffWithViewPermission(BasePermission):
    """Staff who may view the endpoint's model in the admin (``shopguide.view_<model>``)."""

    def has_permission(self, request, view):
        user, opts = request.user, view.queryset.model._meta
        return bool(user and user.is_staff and user.has_perm(f"{opts.app_label}.view_{opts.model_name}"))


class JSONBodyParser(JSONParser):
    """JSON only (other media types get a 415), refused with a 400 in the API's error shape,
    not a server error, when larger than ``MAX_BODY`` or nested too deeply to parse."""

    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        if request is not None and int(request.META.get("CONTENT_LENGTH") or 0) > MAX_BODY:
            raise ParseError(
                f"The body is larger than {MAX_BODY} bytes: send at most {MAX_EVENTS_PER_REQUEST} events per request."
            )
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("JSON parse error - nested too deeply.") from exc


class ShopguideView:
    """Shared by every shopguide view: the OpenAPI schema, the one error shape and sign-in by
    the shop's session only (no HTTP Basic: it would let strangers make the server hash
    passwords, and test them, at will), whatever the host project's REST_FRAMEWORK settings are."""

    schema = ShopguideSchema()
    authentication_classes = [authentication.SessionAuthentication]
    error_statuses = (403,)  # staff endpoints: anonymous, non-staff or without the view permission
    parser_classes = [JSONBodyParser]

    def get_exception_handler(self):
        return shopguide_exception_handler


class RecommendationQuery(serializers.Serializer):
    q = serializers.CharField(max_length=MAX_QUERY_LENGTH, help_text="What the shopper searched for.")
    limit = serializers.IntegerField(min_value=1, max_value=MAX_LIMIT, default=8)
    exclude = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Comma-separated product ids (as the results give them) to leave out: the product on show.",
    )

    def validate_exclude(self, value):
        keys = [key.strip() for key in value.split(",") if key.strip()]
        if len(keys) > MAX_EXCLUDED:
            raise serializers.ValidationError(f"At most {MAX_EXCLUDED} products can be excluded.")
        if any(len(key) > 64 for key in keys):
            raise serializers.ValidationError("A product id is at most 64 characters.")
        return keys


class RecommendationSerializer(serializers.Serializer):
    product = serializers.CharField(
        help_text="The product's id: the shop's own (EXTERNAL_ID_FIELD) where it has one, else the primary key."
    )
    title = serializers.CharField()
    url = serializers.CharField(allow_null=True)
    price = serializers.CharField(allow_null=True, help_text="As the shop formats it (its catalogue adapter).")
    image = serializers.CharField(allow_null=True)
    score = serializers.FloatField()
    reason = serializers.CharField(help_text="Why it is recommended, in words a shopper can read.")


responses = LocalCache(size=4096)


def _forget_answers(*, setting, **kwargs):
    if setting == "SHOPGUIDE":
        responses.clear()


setting_changed.connect(_forget_answers, dispatch_uid="shopguide.api.forget_answers")


class RecommendationsView(ShopguideView, APIView):
    authentication_classes = []  # public: nobody signs in to read recommendations
    permission_classes = [AllowAny]
    error_statuses = (400, 429)

    def dispatch(self, request, *args, **kwargs):
        # A search with plain parameters is answered before DRF's machinery runs, unless the
        # project throttles its API (then every request takes DRF's way, throttles included);
        # anything else takes the validated way below.
        plain = self.plain_parameters(request.GET) if request.method == "GET" else None
        if plain is not None and not self.throttle_classes:
            return self.respond(plain[0], self.answer_tail(*plain))
        return super().dispatch(request, *args, **kwargs)

    @extend_schema(
        parameters=[RecommendationQuery],
        responses={
            200: inline_serializer(
                "Recommendations",
                {
                    "query": serializers.CharField(),
                    "model_version": serializers.IntegerField(
                        allow_null=True, help_text="The version that ranked the answer; null for full-text search."
                    ),
                    "results": RecommendationSerializer(many=True),
                },
            ),
        },
        summary="Recommended products for a search",
    )
    def get(self, request):
        params = RecommendationQuery(data=request.query_params)
        params.is_valid(raise_exception=True)
        query, limit, exclude = (params.validated_data[name] for name in ("q", "limit", "exclude"))
        return self.respond(query, self.answer_tail(query, limit, exclude))

    def answer_tail(self, query, limit, exclude):
        """The answer's JSON without its opening brace (``respond`` puts the query first).
        Whole answers are kept in this process too, keyed by the serving state like the shared
        cache: a repeated search costs no database query at all."""
        key = self.cache_key(query, limit, exclude)
        tail = responses.get(key)
        if tail is None:
            tail = json.dumps(self.answer(query, limit, exclude), ensure_ascii=False, separators=(",", ":"))[
                1:
            ].encode()
            if self.cache_key(query, limit, exclude) == key:  # not when a rule started or ended meanwhile
                responses.set(key, tail, shopguide_settings.CACHE_TIMEOUT)
        return tail

    @staticmethod
    def cache_key(query, limit, exclude):
        normalized = normalized_query(query)
        return serving_state(), rulebook().token(normalized), get_language(), normalized, limit, tuple(exclude)

    @staticmethod
    def respond(query, tail):
        """The answer's JSON: the query as asked, then the cached rest (``tail``)."""
        head = '{"query":' + json.dumps(query, ensure_ascii=False, separators=(",", ":")) + ","
        return HttpResponse(head.encode() + tail, content_type="application/json")

    @staticmethod
    def plain_parameters(get):
        """``(q, limit, exclude)`` when they are plainly valid without exclusions, else None."""
        query, limit = get.get("q", "").strip(), get.get("limit", "8")
        if (
            not query
            or len(query) > MAX_QUERY_LENGTH
            or get.get("exclude")
            or set(get) - {"q", "limit"}
            or not (limit.isascii() and limit.isdigit())
            or not 1 <= int(limit) <= MAX_LIMIT
            or any(char == "\x00" or "\ud800" <= char <= "\udfff" for char in query)
        ):
            return None
        return query, int(limit), []

    def answer(self, query, limit, exclude):
        excluded = get_catalog_source().keys_for_public_ids(exclude).values() if exclude else ()
        items = recommend(query, exclude=excluded, limit=limit)
        results = [
            {
                "product": item.public_id,
                "title": item.title,
                "url": item.url,
                "price": item.price,
                "image": item.image_url,
                "score": item.score,
                "reason": item.reason,
            }
            for item in items
        ]
        return {"model_version": items.model_version, "results": results}


PUBLIC_EVENTS = (SearchEvent.Kind.IMPRESSION, SearchEvent.Kind.CLICK)


class EventSerializer(serializers.Serializer):
    query = serializers.CharField(max_length=MAX_QUERY_LENGTH)
    product = serializers.CharField(max_length=64, help_text="The product's id, as the recommendations give it.")
    event = serializers.ChoiceField(
        choices=[(kind.value, kind.label) for kind in PUBLIC_EVENTS],
        error_messages={
            "invalid_choice": '"{input}" is not an event this endpoint takes: it takes impressions and clicks; '
            "the shop's own server records add-to-cart and purchases."
        },
    )
    placement = serializers.ChoiceField(
        choices=SearchEvent.Placement.choices,
        required=False,
        help_text="The list the product was shown in: shopguide's strip or the shop's results.",
    )
    position = serializers.IntegerField(
        min_value=1, max_value=MAX_POSITION, required=False, help_text="Its place in that list, 1 first."
    )
    version = serializers.IntegerField(
        min_value=1,
        max_value=2**31 - 1,
        required=False,
        help_text="The version that ranked the strip (its data-shopguide-version).",
    )


def validate_events(data):
    """The events of a request body (one object or a list), all valid, or a ValidationError
    naming each bad field (``"2.product"`` for the third event of a list); each event names
    its product by key."""
    many = isinstance(data, list)
    items = data if many else [data]
    if not items:
        raise ValidationError({"non_field_errors": ["Send at least one event."]})
    if len(items) > MAX_EVENTS_PER_REQUEST:
        raise ValidationError({"non_field_errors": [f"At most {MAX_EVENTS_PER_REQUEST} events per request."]})
    serializers_ = [EventSerializer(data=item) for item in items]
    errors = [dict(serializer.errors) if not serializer.is_valid() else {} for serializer in serializers_]
    valid = [serializer.validated_data for serializer in serializers_ if not serializer.errors]
    keys = get_catalog_source().keys_for_public_ids({event["product"] for event in valid})
    for index, serializer in enumerate(serializers_):
        if not serializer.errors and serializer.validated_data["product"] not in keys:
            errors[index]["product"] = [f"Unknown product {serializer.validated_data['product']!r}."]
    versions = {event["version"] for event in valid if "version" in event}
    known_versions = set(RecommenderModel.objects.filter(version__in=versions).values_list("version", flat=True))
    for index, serializer in enumerate(serializers_):
        version = serializer.validated_data.get("version") if not serializer.errors else None
        if version is not None and version not in known_versions:
            errors[index]["version"] = [f"No version {version}."]
    fields = {
        (f"{index}.{name}" if many else name): messages
        for index, item_errors in enumerate(errors)
        for name, messages in item_errors.items()
    }
    if fields:
        raise ValidationError(fields)
    return [{**event, "product": keys[event["product"]]} for event in valid]


class EventsThrottle(SimpleRateThrottle):
    """At most ``SHOPGUIDE["EVENTS_RATE"]`` events per client (``client_address``), each event
    of a request counted. The counters live in the ``THROTTLE_CACHE`` alias, apart from the
    answers, so a flood of clients cannot evict cached recommendations. The address is only
    part of a short-lived cache key; it is never stored with an event."""

    scope = "shopguide_events"

    def __init__(self):
        self.cache = caches[shopguide_settings.THROTTLE_CACHE]
        super().__init__()

    def get_rate(self):
        return shopguide_settings.EVENTS_RATE

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": client_address(request)}

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        events = len(request.data) if isinstance(request.data, list) else 1
        if len(self.history) + events > self.num_requests:
            return self.throttle_failure()
        self.history[:0] = [self.now] * events
        self.cache.set(self.key, self.history, self.duration)
        return True


class ShopperTokenAuthentication(authentication.BaseAuthentication):
    """The shopper named by the request's ``X-Shopguide-Token`` (``request.auth``, a
    ``shoppers.Shopper``); a forged or expired token is refused with a 403."""

    def authenticate(self, request):
        token = request.headers.get(TOKEN_HEADER)
        if not token:
            return None
        try:
            shopper = read_token(token)
        except InvalidToken as exc:
            raise AuthenticationFailed(str(exc), code=exc.code) from exc
        return AnonymousUser(), shopper


class ShopperTokenScheme(OpenApiAuthenticationExtension):
    target_class = ShopperTokenAuthentication
    name = "shopperToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": TOKEN_HEADER,
            "description": "The shopper token a shop page was rendered with (data-shopguide-token).",
        }


class SameSite(BasePermission):
    """Refuses requests that a page of another site makes a shopper's browser send: those that
    say so (``Sec-Fetch-Site: cross-site``) and those from an ``Origin`` other than this
    host's (or one of ``CSRF_TRUSTED_ORIGINS``)."""

    def has_permission(self, request, view):
        origin = request.headers.get("Origin")
        cross_site = request.headers.get("Sec-Fetch-Site") == "cross-site" or (
            origin is not None
            and urlsplit(origin).netloc != request.get_host()
            and origin not in settings.CSRF_TRUSTED_ORIGINS
        )
        if cross_site:
            raise PermissionDenied("Events are taken from the shop's own pages only.", code="cross_site")
        return True


class VerifiedShopper(BasePermission):
    def has_permission(self, request, view):
        if not isinstance(request.auth, Shopper):
            raise PermissionDenied(
                f"Send the shopper token the page was rendered with in the {TOKEN_HEADER} header.",
                code="no_shopper_token",
            )
        return True


class EventsView(ShopguideView, APIView):
    """Shoppers' impressions and clicks of recommended products, posted by the tracking script
    of the shop's own pages with the shopper token they were rendered with (no session, so no
    CSRF token is needed). Add-to-cart and purchases come from the shop's server
    (``services.record_purchase``)."""

    authentication_classes = [ShopperTokenAuthentication]
    permission_classes = [SameSite, VerifiedShopper]
    throttle_classes = [EventsThrottle]
    error_statuses = (400, 403, 415, 429)

    @extend_schema(
        request=PolymorphicProxySerializer(
            component_name="Events",
            serializers=[EventSerializer, EventSerializer(many=True)],
            resource_type_field_name=None,
            many=False,
        ),
        responses={
            201: inline_serializer("EventsStored", {"stored": serializers.IntegerField()}),
        },
        summary="Record shopper impressions and clicks (one object or a list of up to 100)",
    )
    def post(self, request):
        events = validate_events(request.data)
        now = timezone.now()
        with transaction.atomic():
            stored = SearchEvent.objects.bulk_create(
                [
                    SearchEvent(
                        query=event["query"],
                        query_norm=normalized_for_column(event["query"]),
                        product_key=event["product"],
                        event=event["event"],
                        placement=event.get("placement", ""),
                        position=event.get("position"),
                        model_version=event.get("version"),
                        session=request.auth.id,
                        voter=request.auth.voter,
                        created_at=now,
                    )
                    for event in events
                ]
            )
        after_response(credit_clicks, request.auth, events)  # for a running online comparison
        return Response({"stored": len(stored)}, status=status.HTTP_201_CREATED)


class RecommenderModelSerializer(serializers.ModelSerializer):
    class Meta:
        model = RecommenderModel
        fields = [
            "version",
            "status",
            "is_active",
            "base_model",
            "data_counts",
            "metrics_before",
            "metrics_after",
            "reranker_weight",
            "created_at",
            "activated_at",
        ]


class TrainingRunSerializer(serializers.ModelSerializer):
    model_version = serializers.IntegerField(source="model.version", allow_null=True, default=None)

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "status",
            "stage",
            "progress",
            "options",
            "metrics",
            "error",
            "model_version",
            "created_at",
            "started_at",
            "finished_at",
        ]


class Pages(PageNumberPagination):
    page_size = 50


class RecommenderModelList(ShopguideView, generics.ListAPIView):
    permission_classes = [StaffWithViewPermission]
    pagination_class = Pages
    serializer_class = RecommenderModelSerializer
    queryset = RecommenderModel.objects.all()


class RecommenderModelDetail(ShopguideView, generics.RetrieveAPIView):
    error_statuses = (403, 404)
    permission_classes = [StaffWithViewPermission]
    serializer_class = RecommenderModelSerializer
    queryset = RecommenderModel.objects.all()
    lookup_field = "version"


class TrainingRunList(ShopguideView, generics.ListAPIView):
    permission_classes = [StaffWithViewPermission]
    pagination_class = Pages
    serializer_class = TrainingRunSerializer
    queryset = TrainingRun.objects.select_related("model")


class TrainingRunDetail(ShopguideView, generics.RetrieveAPIView):
    error_statuses = (403, 404)
    permission_classes = [StaffWithViewPermission]
    serializer_class = TrainingRunSerializer
    queryset = TrainingRun.objects.select_related("model")
