from shopguide.ml.text import normalize_query


def test_normalize_query_folds_case_width_and_spaces():
    assert normalize_query("  Cordless\tDRILL \n") == "cordless drill"
    assert normalize_query("ＬＥＤ　Bulb") == "led bulb"  # full-width letters and space
    assert normalize_query("Straße") == "strasse"


def test_normalize_query_drops_control_characters():
    assert normalize_query("drill\x00bit\x1b") == "drill bit"
    assert normalize_query("\x00\x07") == ""
