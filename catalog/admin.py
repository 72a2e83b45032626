from django.contrib import admin

from .models import Brand, Category, Order, OrderLine, Product, SearchLog


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug"]
    search_fields = ["name"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Brand)
class BrandAdmin(admin.ModelAdmin):
    list_display = ["name", "slug"]
    search_fields = ["name"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["title", "external_id", "category", "brand", "price", "in_stock", "updated_at"]
    list_filter = ["in_stock", "category"]
    list_editable = ["in_stock"]
    search_fields = ["title", "external_id"]
    autocomplete_fields = ["category", "brand"]
    readonly_fields = ["created_at", "updated_at"]
    list_select_related = ["category", "brand"]


@admin.register(SearchLog)
class SearchLogAdmin(admin.ModelAdmin):
    list_display = ["query", "result_count", "session_key", "created_at"]
    search_fields = ["query"]
    date_hierarchy = "created_at"


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    autocomplete_fields = ["product"]
    extra = 0


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["__str__", "user", "created_at"]
    inlines = [OrderLineInline]
    date_hierarchy = "created_at"
