from shopguide.ml.lexical import BM25Index
from shopguide.ml.ranking import CatalogueIndex
from shopguide.ml.spelling import Speller, edit_distance

TEXTS = [
    "Cordless Drill 18V",
    "Cordless Impact Driver",
    "Cedar Fence Picket",
    "Vinyl Fence Post",
    "Cedar Deck Board",
    "Garage Door Opener",
    "Garage Door Seal",
    "ClosetMaid Wire Shelf",
    "ClosetMaid Shelf Bracket",
    "Shop Vacuum 5 gal.",
    "Shop Vacuum Filter",
    "Cider Vinegar",
    "Kitchen Faucet",
    "Kitchen Faucet Spout",
    "Kitchen Sink",
    "Garage Door Hinge",
    "Kitchen Faucet Cartridge",
    "Kitchen Towel",
    "Garage Door Remote",
    "Kitchen Faucet Aerator",
    "Kitchen Faucet Handle",
    "Garage Door Spring",
]


def correct(query, texts=TEXTS):
    index = BM25Index(range(len(texts)), texts)
    return Speller(texts).correct(query, index.documents_with)


def test_edit_distance_counts_inserts_deletes_substitutions_and_swaps():
    assert edit_distance("ceadar", "cedar", 2) == 1
    assert edit_distance("teh", "the", 2) == 1
    assert edit_distance("vacumm", "vacuum", 2) == 1
    assert edit_distance("kitten", "sitting", 3) == 3
    assert edit_distance("kitten", "sitting", 2) == 3  # over the limit: limit + 1


def test_unknown_words_become_the_closest_catalogue_word():
    assert correct("ceadar fence") == "cedar fence"  # not "cider": one product only, one more edit
    assert correct("shop vacumm") == "shop vacuum"
    assert correct("cordles drill") == "cordless drill"


def test_known_words_plurals_model_numbers_and_short_words_stay_as_typed():
    assert correct("cordless drills") == "cordless drills"  # "drills" stems to a known term
    assert correct("drll dw20x fense9") == "drll dw20x fense9"  # under 5 letters one edit only; digits
    assert correct("with the") == "with the"
    assert correct("trampoline") == "trampoline"  # nothing close: left alone


def test_joined_and_split_words_follow_how_the_catalogue_writes_them():
    assert correct("garagedoor remote") == "garage door remote"
    assert correct("kitchenfaucet") == "kitchen faucet"
    assert correct("closet maid shelf") == "closetmaid shelf"
    assert correct("garage door") == "garage door"  # both known: never joined


def test_a_mistyped_query_finds_its_products_through_the_catalogue_index():
    catalogue = CatalogueIndex([str(i) for i in range(len(TEXTS))], TEXTS)
    assert catalogue.bm25.search("ceadar fense") == []
    fixed = catalogue.correct("ceadar fense")
    assert fixed == "cedar fence"
    assert catalogue.bm25.search(fixed)[0] == "2"
