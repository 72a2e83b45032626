from django.urls import path

from . import views

app_name = "catalog"

urlpatterns = [
    path("", views.home, name="home"),
    path("search/", views.search, name="search"),
    path("search.json", views.search_json, name="search-json"),
    path("healthz/", views.healthz, name="healthz"),
    path("category/<slug:slug>/", views.category, name="category"),
    path("product/<int:pk>/", views.product_detail, name="product"),
    path("product/<int:pk>/add-to-cart/", views.add_to_cart, name="add-to-cart"),
    path("product/<int:pk>/buy/", views.buy_now, name="buy-now"),
    path("cart/", views.cart, name="cart"),
    path("cart/checkout/", views.checkout, name="checkout"),
]
