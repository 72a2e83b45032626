import pytest
from django.core.management import CommandError, call_command

from catalog.models import Brand, Category, Product
from shopguide.models import Judgment, SearchEvent

PRODUCTS = """product_id,title,description,category,brand,price
p1,Cordless Drill 18V,"Compact drill, two batteries",Power Tools,Voltix,89.00
p2,Garden Hose 25 ft,Kink-free rubber hose,Garden,Greenway,24.50
p3,LED Bulb 60W,"Warm white, dimmable",Lighting,,4.99
"""
JUDGMENTS = """query,product_id,grade,split
cordless drill,p1,3,train
cordless drill,p2,0,train
Garden  Hose,p2,2,test
"""
EVENTS = """query,product_id,event,session,timestamp
cordless drill,p1,impression,s1,2026-10-01T10:00:00Z
cordless drill,p1,click,s1,2026-10-01T10:00:05Z
cordless drill,p1,click,s1,2026-10-01T10:00:05Z
hose,p2,purchase,s2,2026-10-02T09:00:00+02:00
"""


def write_dataset(folder, products=PRODUCTS, judgments=JUDGMENTS, events=EVENTS):
    folder.mkdir(exist_ok=True)
    for name, text in [("products.csv", products), ("judgments.csv", judgments), ("events.csv", events)]:
        if text is not None:
            (folder / name).write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return folder


def snapshot():
    return (
        sorted(Product.objects.values_list("external_id", "title", "price")),
        sorted(Judgment.objects.values_list("query_norm", "product_key", "grade")),
        SearchEvent.objects.count(),
        Category.objects.count(),
        Brand.objects.count(),
    )


def load(folder):
    call_command("load_catalog", str(folder), verbosity=0)


@pytest.mark.django_db
def test_loads_products_judgments_and_events(tmp_path):
    load(write_dataset(tmp_path / "shop"))

    drill = Product.objects.get(external_id="p1")
    assert drill.title == "Cordless Drill 18V"
    assert drill.category.name == "Power Tools" and drill.brand.name == "Voltix"
    assert str(drill.price) == "89.00"
    assert Product.objects.get(external_id="p3").brand is None
    assert Judgment.objects.count() == 3
    hose = Product.objects.get(external_id="p2")
    judgment = Judgment.objects.get(query_norm="garden hose")
    assert (judgment.product_key, judgment.grade, judgment.split) == (str(hose.pk), 2.0, "test")
    assert judgment.source == Judgment.Source.IMPORTED
    # The repeated click is a second click, not a duplicate row.
    assert SearchEvent.objects.filter(event="click").count() == 2
    purchase = SearchEvent.objects.get(event="purchase")
    assert purchase.created_at.isoformat() == "2026-10-02T07:00:00+00:00"


@pytest.mark.django_db
def test_loading_again_updates_instead_of_duplicating(tmp_path):
    folder = write_dataset(tmp_path / "shop")
    load(folder)
    first = snapshot()
    load(folder)
    assert snapshot() == first

    write_dataset(
        folder,
        products=PRODUCTS.replace("Cordless Drill 18V", "Cordless Drill 20V"),
        judgments=JUDGMENTS.replace("cordless drill,p1,3", "cordless drill,p1,2"),
    )
    load(folder)
    assert Product.objects.count() == 3
    assert Product.objects.get(external_id="p1").title == "Cordless Drill 20V"
    assert Judgment.objects.get(query_norm="cordless drill", grade__gt=0).grade == 2.0
    assert SearchEvent.objects.count() == 4


@pytest.mark.django_db
def test_repeated_judgments_are_averaged(tmp_path):
    load(write_dataset(tmp_path / "shop", judgments="query,product_id,grade\nhose,p2,1\nHose,p2,2\n", events=None))
    assert list(Judgment.objects.values_list("query_norm", "grade")) == [("hose", 1.5)]


BROKEN = [
    ("products.csv", PRODUCTS.replace("24.50", "24.5O"), "products.csv:3: price: '24.5O' is not a number"),
    ("products.csv", PRODUCTS.replace("product_id,title", "id,title"), "products.csv:1: missing column(s) product_id"),
    (
        "products.csv",
        PRODUCTS + "p1,Another drill,,,,\n",
        "products.csv:5: product_id: duplicate id 'p1' (first on line 2)",
    ),
    ("products.csv", PRODUCTS + "p9,,,,,\n", "products.csv:5: title: empty"),
    ("products.csv", PRODUCTS + "p9,Too few fields\n", "products.csv:5: 2 fields, the header has 6"),
    ("products.csv", PRODUCTS.encode() + "p9,Caf\xe9 table,,,,\n".encode("latin-1"), "products.csv:5: not valid UTF-8"),
    (
        "products.csv",
        PRODUCTS + "p9,Table," + "x" * 10_000_000 + ",,,\n",
        "products.csv:5: description: 10,000,000 characters; a field may have at most 100,000",
    ),
    ("judgments.csv", JUDGMENTS + "drill,p404,3,train\n", "judgments.csv:5: product_id: unknown product 'p404'"),
    ("judgments.csv", JUDGMENTS + "drill,p1,-1,train\n", "judgments.csv:5: grade: '-1' must be a number >= 0"),
    ("judgments.csv", JUDGMENTS + "drill,p1,high,train\n", "judgments.csv:5: grade: 'high' is not a number"),
    ("events.csv", EVENTS + "drill,p1,wishlist,s3,\n", "events.csv:6: event: 'wishlist' is not one of"),
    ("events.csv", EVENTS + "drill,p1,click,s3,yesterday\n", "events.csv:6: timestamp: 'yesterday' is not an ISO 8601"),
]


@pytest.mark.django_db
@pytest.mark.parametrize("file_name, content, message", BROKEN, ids=[case[2][:40] for case in BROKEN])
def test_a_broken_row_is_reported_and_nothing_changes(tmp_path, file_name, content, message):
    load(write_dataset(tmp_path / "good"))
    Product.objects.filter(external_id="p1").update(title="Edited by the shop")
    before = snapshot()

    # The broken folder also changes a good row: that change must not be kept either.
    bad = write_dataset(tmp_path / "bad", products=PRODUCTS.replace("Garden Hose", "Hose Reel"))
    (bad / file_name).write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    with pytest.raises(CommandError) as raised:
        load(bad)
    assert message in str(raised.value)
    assert "Nothing was loaded" in str(raised.value)
    assert snapshot() == before


@pytest.mark.django_db
def test_multiline_fields_keep_line_numbers_right(tmp_path):
    products = PRODUCTS + 'p4,Shelf,"line one\nline two",Storage,,12\np5,Hook,,Storage,,x\n'
    with pytest.raises(CommandError, match=r"products.csv:7: price: 'x' is not a number"):
        load(write_dataset(tmp_path / "shop", products=products, judgments=None, events=None))


def test_missing_folder_is_reported(tmp_path):
    with pytest.raises(CommandError, match="nowhere: no products.csv in this folder"):
        call_command("load_catalog", str(tmp_path / "nowhere"), verbosity=0)
