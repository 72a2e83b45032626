"""Admin for merchandisers and shop staff: versions, training runs with live progress,
judgments and events. Every action enqueues Celery work and says so with ``message_user``."""

import datetime
import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy

from . import insights, online, operations
from .catalog_source import get_catalog_source
from .charts import bar_chart, line_chart
from .conf import shopguide_settings
from .fulltext import search_keys
from .importing import DatasetError, import_judgments
from .ml.text import normalize_query
from .ml.version_files import VersionFilesError, verify
from .models import Judgment, QueryRule, RecommenderModel, Rescore, RuleProduct, SearchEvent, TrainingRun
from .services import MAX_LIMIT, recommend


@admin.register(RecommenderModel)
class RecommenderModelAdmin(admin.ModelAdmin):
    list_display = ["__str__", "status", "is_active", "created_at", "products", "pairs", "ndcg_before", "ndcg_after"]
    list_filter = ["status", "is_active"]
    actions = ["activate_versions", "compare_online", "stop_comparison", "roll_back", "rescore_catalogue"]
    change_list_template = "admin/shopguide/recommendermodel/change_list.html"
    readonly_fields = [
        "version",
        "status",
        "is_active",
        "activated_at",
        "activation",
        "created_at",
        "base_model",
        "artifact_path",
        "checksum",
        "files",
        "reranker_weight",
        "serves_with",
        "quality",
        "online_comparison",
        "data",
        "settings_used",
        "charts",
    ]
    exclude = ["loss_curve", "data_counts", "hyperparameters", "metrics_before", "metrics_after", "query_encoder"]

    def has_add_permission(self, request):
        return False  # versions come from training runs

    @admin.display(description=_lazy("products"))
    def products(self, obj):
        return obj.data_counts.get("products")

    @admin.display(description=_lazy("pairs"))
    def pairs(self, obj):
        return obj.data_counts.get("pairs")

    @admin.display(description=_lazy("nDCG@10 before"))
    def ndcg_before(self, obj):
        value = obj.ndcg("before", "hybrid")
        return "–" if value is None else f"{value:.3f}"

    @admin.display(description=_lazy("nDCG@10 after"))
    def ndcg_after(self, obj):
        value = obj.ndcg("after", "hybrid")
        return "–" if value is None else f"{value:.3f}"

    @admin.display(description=_lazy("held-out quality"))
    def quality(self, obj):
        """A table a merchandiser reads: each strategy's figures on the held-out queries, for the
        base model (before) and this version (after), and what served when it was trained."""
        measured = {**obj.metrics_before, **obj.metrics_after}
        rows = [
            (name, obj.metrics_before.get(name) or {}, obj.metrics_after.get(name) or {})
            for name, figures in measured.items()
            if name != "serving" and isinstance(figures, dict) and "skipped" not in figures
        ]
        serving = obj.metrics_before.get("serving")
        if serving:
            rows.append((_("%s (serving then)") % serving["name"], serving, {}))

        def cell(before, after, name):
            figures = [f"{side[name]:.3f}" for side in (before, after) if isinstance(side.get(name), float)]
            side = after or before
            if figures and f"{name}_interval" in side:  # the last figure's 95% bootstrap interval
                interval = side[f"{name}_interval"]
                text = "{:.3f}–{:.3f}".format(*interval) if interval else _("too few queries to tell")
                return format_html('{}<br><small title="{}">{}</small>', " → ".join(figures),
                                   _("95% bootstrap interval over the queries"), text)  # fmt: skip
            return " → ".join(figures) or "–"

        body = format_html_join(
            "",
            "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (name, cell(before, after, "ndcg@10"), cell(before, after, "recall@100"), cell(before, after, "mrr"),
                 after.get("queries") or before.get("queries") or "–")
                for name, before, after in rows
            ),
        )  # fmt: skip
        head = format_html(
            "<thead><tr><th>{}</th><th>nDCG@10</th><th>Recall@100</th><th>MRR</th><th>{}</th></tr></thead>",
            _("strategy (before → after)"),
            _("queries"),
        )
        return format_html('<table class="shopguide-figures">{}<tbody>{}</tbody></table>', head, body)

    @admin.display(description=_lazy("query encoder"))
    def serves_with(self, obj):
        """What web processes encode queries with, and how closely it matched torch."""
        report = obj.query_encoder
        if report.get("served"):
            text = _(
                "onnxruntime (no torch): vectors match torch's to a cosine of %(cosine)s or more on %(texts)s texts"
            ) % {
                "cosine": report["min_cosine"],
                "texts": report["checked"],
            }
            k = next((key for key in report if key.startswith("hybrid_ndcg") and key.endswith("_onnx")), None)
            if k:
                text += _("; held-out hybrid %(metric)s %(onnx).4f (torch %(torch).4f)") % {
                    "metric": k.removeprefix("hybrid_").removesuffix("_onnx"),
                    "onnx": report[k],
                    "torch": report[k.removesuffix("_onnx")],
                }
            return text
        if report:
            return _("torch: the ONNX export was not kept (%s)") % (
                report.get("error") or _("minimum cosine %s") % report.get("min_cosine")
            )
        return _("torch (trained before ONNX export)")

    @admin.display(description=_lazy("data"))
    def data(self, obj):
        rows = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", sorted(obj.data_counts.items()))
        return format_html('<table class="shopguide-figures"><tbody>{}</tbody></table>', rows)

    @admin.display(description=_lazy("training settings"))
    def settings_used(self, obj):
        return format_html(
            "<details><summary>{}</summary><pre>{}</pre></details>",
            _("show"),
            json.dumps(obj.hyperparameters, indent=2, sort_keys=True),
        )

    @admin.display(description=_lazy("files"))
    def files(self, obj):
        """Whether the version's folder still matches its checksum: a changed or missing folder
        cannot be activated, and an active one is not served (full-text search answers)."""
        try:
            verify(obj.folder, obj.checksum)
        except VersionFilesError as exc:
            serving = " Serving has fallen back to full-text search." if obj.is_active else ""
            return format_html('<strong class="errornote">{}{}</strong>', exc, serving)
        return "intact (checksum verified)"

    @admin.display(description=_lazy("loss and quality"))
    def charts(self, obj):
        curves = {name: values for name, values in obj.loss_curve.items() if isinstance(values, list) and values}
        bars = {"base model": obj.ndcg("before", "hybrid"), f"v{obj.version}": obj.ndcg("after", "hybrid")}
        serving = obj.metrics_before.get("serving")
        if serving:
            bars[f"{serving['name']} (serving then)"] = serving["ndcg@10"]
        return mark_safe(
            "<div class='shopguide-charts'>"
            + "".join(line_chart(values, title=f"{name} loss") for name, values in curves.items())
            + bar_chart(
                {label: value for label, value in bars.items() if value is not None}, title="held-out nDCG@10 (hybrid)"
            )
            + "</div>"
        )

    def get_urls(self):
        return [
            path("retrain/", self.admin_site.admin_view(self.retrain_view), name="shopguide_recommendermodel_retrain"),
        ] + super().get_urls()

    def retrain_view(self, request):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            return redirect("admin:index")
        try:
            run = operations.train(user=request.user)
        except operations.QueueUnavailable as exc:
            self.message_user(request, _("Training could not be queued: %s") % exc, messages.ERROR)
        except operations.OperationError as exc:
            self.message_user(request, str(exc), messages.WARNING)
        else:
            url = reverse("admin:shopguide_trainingrun_change", args=[run.pk])
            self.message_user(request, format_html(_('Training run <a href="{}">#{}</a> queued.'), url, run.pk))
            if request.user.has_perm("shopguide.view_trainingrun"):
                return redirect(url)
        return redirect("admin:shopguide_recommendermodel_changelist")

    def run_action(self, request, operation, done):
        """Run ``operation()`` and tell the user ``done(its result)`` or why it could not."""
        try:
            result = operation()
        except operations.OperationError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, done(result))

    def only_version(self, request, queryset, warning):
        """The one version selected, or None with ``warning`` told to the user."""
        if queryset.count() != 1:
            self.message_user(request, warning, messages.WARNING)
            return None
        return queryset.get()

    @admin.action(description=_lazy("Activate (rescore the catalogue with it, then serve it)"), permissions=["change"])
    def activate_versions(self, request, queryset):
        model = self.only_version(request, queryset, _("Select exactly one version to activate."))
        if model is None:
            return
        self.run_action(
            request,
            lambda: operations.activate(model),
            lambda result: _("Version %s is being rescored; it serves as soon as its vectors are in.") % model.version,
        )

    @admin.action(description=_lazy("Compare online with the serving version"), permissions=["change"])
    def compare_online(self, request, queryset):
        model = self.only_version(request, queryset, _("Select exactly one version to compare."))
        if model is None:
            return
        self.run_action(
            request,
            lambda: operations.compare_online(model),
            lambda comparison: (
                _(
                    "Version %(candidate)s is compared with version %(serving)s on %(share)s of shoppers; "
                    "its page shows how it fares."
                )
                % {
                    "candidate": model.version,
                    "serving": comparison.serving.version,
                    "share": f"{shopguide_settings.ONLINE_SHARE:.0%}",
                }
            ),
        )

    @admin.action(description=_lazy("Stop the online comparison"), permissions=["change"])
    def stop_comparison(self, request, queryset):
        self.run_action(
            request,
            operations.stop_comparison,
            lambda comparison: _("The online comparison is stopped.") if comparison else _("No comparison runs."),
        )

    @admin.display(description=_lazy("online comparison"))
    def online_comparison(self, obj):
        """The version's latest comparison with the serving one on shoppers: wins, losses
        and ties as a table, its share of the decided ones with a 95% interval, the verdict."""
        comparison = obj.comparisons.select_related("serving").first()
        if comparison is None:
            return _("Not compared online (action: Compare online with the serving version).")
        result = online.standing(comparison)
        interval = "–" if result.interval is None else "{:.1%}–{:.1%}".format(*result.interval)
        share = "–" if result.share is None else f"{result.share:.1%}"
        state = comparison.get_status_display()
        if comparison.status == comparison.Status.RUNNING:
            state = _("running since %s, on %s of shoppers") % (
                formats.date_format(timezone.localtime(comparison.started_at), "SHORT_DATETIME_FORMAT"),
                f"{shopguide_settings.ONLINE_SHARE:.0%}",
            )
        return format_html(
            '<table class="shopguide-figures" id="online-comparison"><thead><tr><th>{}</th><th>{}</th><th>{}</th>'
            "<th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody><tr><td>v{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td><td>{}</td></tr></tbody></table><p>{} {}</p>",
            _("against"), _("wins"), _("losses"), _("ties"), _("share of decided"), _("95% interval"),
            comparison.serving.version, result.wins, result.losses, result.ties, share, interval,
            state + ".", comparison.verdict or online.describe(result),
        )  # fmt: skip

    @admin.action(description=_lazy("Roll back to the previous version"), permissions=["change"])
    def roll_back(self, request, queryset):
        self.run_action(
            request,
            operations.roll_back,
            lambda previous: (
                _("Rolling back to version %s: it serves as soon as its vectors are in.") % previous.version
            ),
        )

    @admin.action(description=_lazy("Rescore the catalogue with the active version"), permissions=["change"])
    def rescore_catalogue(self, request, queryset):
        self.run_action(
            request, operations.rescore, lambda result: _("Rescoring the catalogue with the active version.")
        )


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["__str__", "status", "stage", "progress_bar", "started_by", "created_at", "finished_at"]
    list_filter = ["status"]
    readonly_fields = [
        "status",
        "stage",
        "progress_bar",
        "options",
        "error",
        "model",
        "activation",
        "task_id",
        "worker",
        "started_by",
        "created_at",
        "started_at",
        "heartbeat_at",
        "finished_at",
        "metrics",
        "loss_chart",
    ]
    exclude = ["loss_curve", "progress"]
    actions = ["cancel_runs"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # runs are written by the training task; staff watch them

    def has_cancel_permission(self, request):
        return request.user.has_perm("shopguide.change_recommendermodel")

    @admin.action(description=_lazy("Cancel the selected queued or running runs"), permissions=["cancel"])
    def cancel_runs(self, request, queryset):
        cancelled = [run.pk for run in queryset if operations.cancel(run)]
        self.message_user(
            request,
            _("Cancelled run(s) %s.") % ", ".join(f"#{pk}" for pk in cancelled)
            if cancelled
            else _("None of the selected runs was queued or running."),
            messages.SUCCESS if cancelled else messages.WARNING,
        )

    @admin.display(description=_lazy("activation"))
    def activation(self, obj):
        """What the activation gate compared and decided for the run's version."""
        return obj.model.activation if obj.model else "–"

    @admin.display(description=_lazy("progress"))
    def progress_bar(self, obj):
        outcome = {
            "failed": f" (failed: {obj.error})",
            "succeeded": f" (version {obj.model.version})" if obj.model else "",
        }.get(obj.status, "")
        return format_html(
            '<div class="shopguide-progress" data-url="{}" data-status="{}">'
            '<progress max="100" value="{}"></progress> <span>{}% {}{}</span></div>',
            reverse("admin:shopguide_trainingrun_progress", args=[obj.pk]),
            obj.status,
            obj.progress,
            f"{obj.progress:.0f}",
            obj.stage,
            outcome,
        )

    @admin.display(description=_lazy("loss"))
    def loss_chart(self, obj):
        curves = {name: values for name, values in obj.loss_curve.items() if values}
        return mark_safe("".join(line_chart(values, title=name) for name, values in curves.items()) or "–")

    def get_urls(self):
        return [
            path(
                "<int:pk>/progress/",
                self.admin_site.admin_view(self.progress_view),
                name="shopguide_trainingrun_progress",
            ),
        ] + super().get_urls()

    def progress_view(self, request, pk):
        if not self.has_view_permission(request):
            return JsonResponse({"error": "forbidden"}, status=403)
        run = get_object_or_404(TrainingRun, pk=pk)
        return JsonResponse(
            {
                "status": run.status,
                "stage": run.stage,
                "progress": run.progress,
                "error": run.error,
                "version": run.model.version if run.model else None,
            }
        )

    class Media:
        js = ["shopguide/admin_progress.js"]


@admin.register(Rescore)
class RescoreAdmin(admin.ModelAdmin):
    list_display = ["__str__", "model", "status", "products", "chunks", "created_at", "finished_at"]
    list_filter = ["status"]
    readonly_fields = [field.name for field in Rescore._meta.fields] + ["done_chunks"]

    def has_add_permission(self, request):
        return False


class JudgmentUploadForm(forms.Form):
    file = forms.FileField(
        label=_lazy("Judgments CSV"),
        help_text=_lazy(
            "Columns query, product_id, grade and optionally split; UTF-8. "
            "Products are named by their id in your shop. All rows are stored, or none."
        ),
    )
    skip_unknown = forms.BooleanField(
        required=False,
        label=_lazy("Skip rows of products the shop no longer has"),
        help_text=_lazy("Store the other rows and list the skipped ones with their line numbers."),
    )


@admin.register(Judgment)
class JudgmentAdmin(admin.ModelAdmin):
    list_display = ["query", "product_key", "grade", "source", "split", "updated_at"]
    list_filter = ["source", "split"]
    search_fields = ["query_norm", "product_key"]
    fields = ["query", "product_key", "grade", "split"]
    change_list_template = "admin/shopguide/judgment/change_list.html"

    def save_model(self, request, obj, form, change):
        if not change:
            obj.source = Judgment.Source.MANUAL
        super().save_model(request, obj, form, change)

    def get_urls(self):
        return [
            path("upload/", self.admin_site.admin_view(self.upload_view), name="shopguide_judgment_upload"),
        ] + super().get_urls()

    def upload_view(self, request):
        if not self.has_add_permission(request):
            return redirect("admin:index")
        form = JudgmentUploadForm(request.POST or None, request.FILES or None)
        problems, skipped = [], []
        if request.method == "POST" and form.is_valid():
            try:
                report = import_judgments(form.cleaned_data["file"], form.cleaned_data["skip_unknown"])
            except DatasetError as exc:
                problems = [str(problem) for problem in exc.problems[:50]]
                self.message_user(
                    request, _("Nothing was imported: %d problem(s) found.") % len(exc.problems), messages.ERROR
                )
            else:
                self.message_user(request, _("%d judgments imported.") % report.stored)
                if not report.skipped:
                    return redirect("admin:shopguide_judgment_changelist")
                skipped = [str(problem) for problem in report.skipped[:50]]
                self.message_user(
                    request, _("%d row(s) of unknown products were skipped.") % len(report.skipped), messages.WARNING
                )
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "problems": problems,
            "skipped": skipped,
            "opts": self.model._meta,
            "title": _("Import judgments"),
        }
        return TemplateResponse(request, "admin/shopguide/judgment/upload.html", context)


class InsightsPeriodForm(forms.Form):
    """The period of the search insights: local days, both included, a year at most."""

    LONGEST = datetime.timedelta(days=366)

    start = forms.DateField(label=_lazy("from"), widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label=_lazy("to"), widget=forms.DateInput(attrs={"type": "date"}))

    @classmethod
    def default(cls):
        today = timezone.localdate()
        return {"start": today - datetime.timedelta(days=29), "end": today}

    def clean(self):
        period = super().clean()
        start, end = period.get("start"), period.get("end")
        if start and end:
            if end < start:
                raise forms.ValidationError(_("The period ends before it starts."))
            if end - start >= self.LONGEST:
                raise forms.ValidationError(_("Choose a period of a year at most."))
        return period


def percent(value):
    return "–" if value is None else f"{value:.1%}"


def places(value):
    return "–" if value is None else f"{value:.2f}"


def query_row(figures):
    """A query's line in the insights' tables."""
    return [
        figures.query,
        figures.searches,
        percent(figures.no_result_rate),
        figures.views,
        percent(figures.click_through),
        places(figures.mean_click_position),
        figures.carts,
        figures.purchases,
    ]


QUERY_COLUMNS = [
    _lazy("query"),
    _lazy("searches"),
    _lazy("no results"),
    _lazy("strip views"),
    _lazy("click-through"),
    _lazy("mean click position"),
    _lazy("to cart"),
    _lazy("bought"),
]


@admin.register(SearchEvent)
class SearchEventAdmin(admin.ModelAdmin):
    list_display = ["query", "product_key", "event", "placement", "position", "model_version", "session", "created_at"]
    list_filter = ["event", "placement"]
    search_fields = ["query_norm", "product_key", "session"]
    date_hierarchy = "created_at"
    change_list_template = "admin/shopguide/searchevent/change_list.html"

    def get_urls(self):
        return [
            path("insights/", self.admin_site.admin_view(self.insights_view), name="shopguide_searchevent_insights"),
            *super().get_urls(),
        ]

    def insights_view(self, request):
        """Search insights for a period (``?start=&end=``, the last 30 days by default)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = InsightsPeriodForm(request.GET if request.GET else InsightsPeriodForm.default())
        figures = None
        if form.is_valid():
            figures = insights.insights(form.cleaned_data["start"], form.cleaned_data["end"])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Search insights"),
            "form": form,
            "insights": figures,
        }
        if figures:
            totals = figures.totals
            context |= {
                "charts": self.insights_charts(figures),
                "totals": [
                    ("searches", _("searches"), totals.searches),
                    ("queries", _("distinct queries"), figures.distinct_queries),
                    ("no-results", _("searches with no results"), percent(totals.no_result_rate)),
                    ("unmatched-strips", _("strips that matched nothing"), percent(totals.unmatched_strip_rate)),
                    ("views", _("strip views"), totals.views),
                    ("click-through", _("strip click-through"), percent(totals.click_through)),
                    ("position", _("mean click position"), places(totals.mean_click_position)),
                    ("carts", _("put in a cart after a search"), totals.carts),
                    ("purchases", _("bought after a search"), totals.purchases),
                ],
                "versions": [
                    [
                        f"v{row.version}" if row.version else _("none (full-text search, or no strip)"),
                        row.views,
                        percent(row.click_through),
                        places(row.mean_click_position),
                        row.carts,
                        row.purchases,
                    ]
                    for row in figures.versions
                ],
                "query_columns": QUERY_COLUMNS,
                "query_tables": [
                    ("top", _("Top queries"), [query_row(row) for row in figures.top_queries]),
                    ("no-results", _("Queries with no results"), [query_row(row) for row in figures.no_result_queries]),
                    ("unclicked", _("Queries whose strip nobody clicked"), [query_row(row) for row in figures.unclicked_queries]),
                    ("worst", _("Lowest click-through (at least %d strip views)") % insights.MIN_VIEWS,
                     [query_row(row) for row in figures.worst_click_through]),
                ],
            }  # fmt: skip
        return TemplateResponse(request, "admin/shopguide/searchevent/insights.html", context)

    @staticmethod
    def insights_charts(figures):
        days = figures.days
        searches = [day.searches for _day, day in days]
        click_through = [day.click_through or 0.0 for _day, day in days]
        charts = []
        if len(days) > 1:
            charts.append(line_chart(searches, title=_("searches a day"), unit=_("days")))
            charts.append(line_chart(click_through, title=_("strip click-through a day"), unit=_("days")))
        return mark_safe("".join(charts))


class ProductKeyInput(forms.TextInput):
    """A product's key, with suggestions (title and key) from the catalogue as staff type."""

    def __init__(self, attrs=None):
        super().__init__({"class": "shopguide-product", "autocomplete": "off", **(attrs or {})})

    def get_context(self, name, value, attrs):
        attrs = {**(attrs or {}), "data-lookup": reverse("admin:shopguide_queryrule_products")}
        return super().get_context(name, value, attrs)

    class Media:
        js = ["shopguide/admin_products.js"]


class RuleProductForm(forms.ModelForm):
    class Meta:
        model = RuleProduct
        fields = ["product_key", "action", "position"]
        widgets = {"product_key": ProductKeyInput()}

    def clean_product_key(self):
        key = self.cleaned_data["product_key"].strip()
        found = get_catalog_source().products_by_key([key], available_only=False)
        if not found:
            raise forms.ValidationError(_("No product has the key %(key)s."), params={"key": key})
        return next(iter(found))  # its key as the catalogue writes it ("007" names product 7)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("action") == RuleProduct.Action.PIN:
            position = cleaned.get("position")
            if position is None or not 1 <= position <= MAX_LIMIT:
                self.add_error(
                    "position", _("A pinned product needs a position from 1 to %(most)s.") % {"most": MAX_LIMIT}
                )
        else:
            cleaned["position"] = None  # only pins have a place
        return cleaned


class RuleProductInline(admin.TabularInline):
    model = RuleProduct
    form = RuleProductForm
    extra = 1
    fields = ["product_key", "product_title", "action", "position"]
    readonly_fields = ["product_title"]

    @admin.display(description=_lazy("title"))
    def product_title(self, obj):
        source = get_catalog_source()
        product = (
            source.products_by_key([obj.product_key], available_only=False).get(obj.product_key) if obj.pk else None
        )
        if product is None:
            return "–"
        available = obj.product_key in source.products_by_key([obj.product_key])
        return (
            source.title(product)
            if available
            else _("%(title)s (not available: not shown)") % {"title": source.title(product)}
        )


class QueryRuleForm(forms.ModelForm):
    class Meta:
        model = QueryRule
        fields = ["query", "match", "enabled", "starts_at", "ends_at", "note"]

    def clean_query(self):
        query = self.cleaned_data["query"]
        if not normalize_query(query):
            raise forms.ValidationError(_("The search needs at least one letter or digit."))
        if len(normalize_query(query)) > QueryRule._meta.get_field("query_norm").max_length:
            raise forms.ValidationError(_("The search is too long once normalised; shorten it."))
        return " ".join(query.split())

    def clean(self):
        cleaned = super().clean()
        starts_at, ends_at = cleaned.get("starts_at"), cleaned.get("ends_at")
        if starts_at and ends_at and ends_at <= starts_at:
            self.add_error("ends_at", _("The rule must end after it starts."))
        return cleaned


@admin.register(QueryRule)
class QueryRuleAdmin(admin.ModelAdmin):
    """Merchandisers' rules for searches: pin, bury or hide products (see ``rules``). Every
    change is in the rule's history (who, when, what), and shows at the shoppers' next search."""

    form = QueryRuleForm
    inlines = [RuleProductInline]
    list_display = [
        "query",
        "match",
        "actions_summary",
        "enabled",
        "in_effect_now",
        "period",
        "updated_at",
        "updated_by",
    ]
    list_display_links = ["query"]
    list_filter = ["enabled", "match"]
    search_fields = ["query_norm", "products__product_key", "note"]
    readonly_fields = ["updated_at", "updated_by", "preview"]

    @admin.display(description=_lazy("shoppers see now"))
    def preview(self, obj):
        """What a shopper searching the rule's query is shown now, rules in effect applied: after
        "Save and continue editing", the rule's effect (or why it has none yet)."""
        if obj.pk is None:
            return _("Save the rule to see what shoppers are shown for its search.")
        items = recommend(obj.query, limit=8)
        if not items:
            return "–"
        rows = format_html_join("", "<li>{} <small>({})</small></li>", ((item.title, item.reason) for item in items))
        return format_html('<ol class="shopguide-preview">{}</ol>', rows)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("updated_by").prefetch_related("products")

    @admin.display(description=_lazy("products"))
    def actions_summary(self, obj):
        """What the rule does, product by product, named by title (one query a row)."""
        items = list(obj.products.all())
        source = get_catalog_source()
        found = source.products_by_key([item.product_key for item in items], available_only=False)
        verbs = {"pin": _("pin"), "bury": _("bury"), "hide": _("hide")}
        return (
            format_html_join(
                mark_safe("<br>"),
                "{} “{}”{}",
                (
                    (
                        verbs[item.action],
                        source.title(found[item.product_key]) if item.product_key in found else item.product_key,
                        _(" at %(position)s") % {"position": item.position} if item.position else "",
                    )
                    for item in items
                ),
            )
            or "–"
        )

    @admin.display(description=_lazy("period"))
    def period(self, obj):
        def when(moment):
            return formats.date_format(timezone.localtime(moment), "SHORT_DATETIME_FORMAT")

        if obj.starts_at and obj.ends_at:
            return f"{when(obj.starts_at)} – {when(obj.ends_at)}"
        if obj.starts_at:
            return _("from %(moment)s") % {"moment": when(obj.starts_at)}
        if obj.ends_at:
            return _("until %(moment)s") % {"moment": when(obj.ends_at)}
        return _("always")

    @admin.display(description=_lazy("in effect now"), boolean=True)
    def in_effect_now(self, obj):
        return obj.in_effect(timezone.now())

    def save_model(self, request, obj, form, change):
        obj.updated_by = request.user
        super().save_model(request, obj, form, change)

    def get_urls(self):
        return [
            path("products/", self.admin_site.admin_view(self.products_view), name="shopguide_queryrule_products"),
            *super().get_urls(),
        ]

    def products_view(self, request):
        """Up to 20 products for what staff typed: the product with that key, then full-text
        matches, as ``{"results": [{"key", "title"}]}``."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        term = " ".join(request.GET.get("term", "").split())[:100]
        source = get_catalog_source()
        by_id = list(source.keys_for_public_ids([term]).values()) if term else []
        keys = (
            by_id + ([term] if term else []) + (search_keys(normalize_query(term), 20) if normalize_query(term) else [])
        )
        products = source.products_by_key(keys, available_only=False)
        seen, results = set(), []
        for key in keys:
            if key in products and key not in seen:
                seen.add(key)
                results.append({"key": key, "title": source.title(products[key])})
        return JsonResponse({"results": results[:20]})
