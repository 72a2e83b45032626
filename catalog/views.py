from django.core.paginator import Paginator
from django.db.models import Count
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render

from shopguide.services import LAST_QUERY_SESSION_KEY, remember_search

from .models import Category, Product, SearchLog
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
            if not request.session.session_key:
                request.session.save()
            SearchLog.objects.create(
                query=query, session_key=request.session.session_key, result_count=page.paginator.count
            )
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


def search_json(request):
    """The shop's plain full-text search as JSON (the first 8 results): a baseline that
    bench/serving.py loads next to the recommendations API."""
    query = query_from(request)
    results = search_products(query, visible_products().filter(in_stock=True))[0][:8] if query else []
    return JsonResponse({"query": query, "results": [{"product": str(p.pk), "title": p.title} for p in results]})


def healthz(request):
    """A trivial JSON view: load balancers' health check, and the benchmarks' baseline."""
    return JsonResponse({"ok": True})
