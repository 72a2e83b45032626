from django.contrib import admin

from .models import Judgment, SearchEvent


@admin.register(Judgment)
class JudgmentAdmin(admin.ModelAdmin):
    list_display = ["query", "product_key", "grade", "source", "split", "updated_at"]
    list_filter = ["source", "split"]
    search_fields = ["query_norm", "product_key"]


@admin.register(SearchEvent)
class SearchEventAdmin(admin.ModelAdmin):
    list_display = ["query", "product_key", "event", "session", "created_at"]
    list_filter = ["event"]
    search_fields = ["query_norm", "product_key", "session"]
    date_hierarchy = "created_at"
