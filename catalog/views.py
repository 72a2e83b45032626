from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from shopguide.services import (
    LAST_QUERY_SESSION_KEY,
    record_add_to_cart,
    record_purchase,
    record_search,
    remember_search,
)

from .models import Category, Order, OrderLine, Product, SearchLog
from .search import search_products

PAGE_SIZE = 24
MAX_QUERY_LENGTH = 256


def visible_products():
    return Product.objects.select_related("category", "brand")


def home(request):
    categories = Category.objects.annotate(product_count=Count("products")).filter(product_count__gt=0)
    featured = visible_products().filter(in_stock=True).order_by("-updated_at", "pk")[:8]
    return render(request, "catalog/home.html", {"categories": categories, "products": featured})


def query_from(request):
    """The search as typed, without characters PostgreSQL cannot store (NUL)."""
    return request.GET.get("q", "").replace("\x00", "").strip()[:MAX_QUERY_LENGTH]


def search(request):
    query = query_from(request)
    page = None
    all_words_matched = True
    if query:
        results, all_words_matched = search_products(query, visible_products())
        page = Paginator(results, PAGE_SIZE).get_page(request.GET.get("page"))
        if request.GET.get("page") in (None, "1"):
            SearchLog.objects.create(
                query=query, session_key=request.session.session_key or "", result_count=page.paginator.count
            )
            record_search(request, query, results=page.paginator.count)
        else:
            remember_search(request, query)
    return render(
        request,
        "catalog/search.html",
        {
            "query": query,
            "page": page,
            "all_words_matched": all_words_matched,
        },
    )


def category(request, slug):
    category = get_object_or_404(Category, slug=slug)
    page = Paginator(visible_products().filter(category=category), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "catalog/category.html", {"category": category, "page": page})


def product_detail(request, pk):
    product = get_object_or_404(visible_products(), pk=pk)
    query = query_from(request) or request.session.get(LAST_QUERY_SESSION_KEY, "")
    remember_search(request, query)
    return render(request, "catalog/product_detail.html", {"product": product, "query": query})


CART_SESSION_KEY = "cart"  # {product pk: [quantity, the search it was added after]}


def cart_lines(request):
    cart = request.session.get(CART_SESSION_KEY, {})
    products = Product.objects.in_bulk([int(pk) for pk in cart])
    return [(products[int(pk)], quantity, query) for pk, (quantity, query) in cart.items() if int(pk) in products]


def search_before(request):
    """The search that led to a product page's button: the page's (a form field), else the
    session's last."""
    return request.POST.get("q", "").replace("\x00", "").strip()[:MAX_QUERY_LENGTH] or request.session.get(
        LAST_QUERY_SESSION_KEY, ""
    )


@require_POST
def add_to_cart(request, pk):
    """Put a product in the session's cart; shopguide records it (server-side) for the search
    the shopper made last."""
    product = get_object_or_404(Product, pk=pk, in_stock=True)
    query = search_before(request)
    cart = request.session.get(CART_SESSION_KEY, {})
    quantity, _ = cart.get(str(pk), (0, query))
    cart[str(pk)] = (quantity + 1, query)
    request.session[CART_SESSION_KEY] = cart
    request.session.save()  # now, so that the event names the shopper's session
    record_add_to_cart(product, request=request, query=query)
    messages.success(request, f"“{product.title}” is in your cart.")
    return redirect("catalog:cart")


def cart(request):
    lines = cart_lines(request)
    total = sum((product.price or 0) * quantity for product, quantity, _ in lines)
    return render(request, "catalog/cart.html", {"lines": lines, "total": total})


def place_order(request, lines):
    """An order of ``lines`` (``(product, quantity, query)``), each product's purchase recorded
    for the search that led to it."""
    if not request.session.session_key:
        request.session.save()  # so that the events name the shopper's session
    with transaction.atomic():
        order = Order.objects.create(
            user=request.user if request.user.is_authenticated else None, session_key=request.session.session_key or ""
        )
        OrderLine.objects.bulk_create(
            OrderLine(order=order, product=product, quantity=quantity, price=product.price or 0, query=query)
            for product, quantity, query in lines
        )
        for product, _, query in lines:
            record_purchase(product, request=request, query=query)
    return order


@require_POST
def checkout(request):
    lines = cart_lines(request)
    if not lines:
        return redirect("catalog:cart")
    order = place_order(request, lines)
    request.session.pop(CART_SESSION_KEY, None)
    return render(request, "catalog/order_placed.html", {"order": order})


@require_POST
def buy_now(request, pk):
    """One product bought at once, without the cart."""
    product = get_object_or_404(Product, pk=pk, in_stock=True)
    order = place_order(request, [(product, 1, search_before(request))])
    return render(request, "catalog/order_placed.html", {"order": order})


def search_json(request):
    """The shop's plain full-text search as JSON (the first 8 results): a baseline that
    bench/serving.py loads next to the recommendations API."""
    query = query_from(request)
    results = search_products(query, visible_products().filter(in_stock=True))[0][:8] if query else []
    return JsonResponse({"query": query, "results": [{"product": str(p.pk), "title": p.title} for p in results]})


def healthz(request):
    """A trivial JSON view: load balancers' health check, and the benchmarks' baseline."""
    return JsonResponse({"ok": True})
