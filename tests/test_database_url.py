import pytest

from config.database_url import parse_database_url


def test_tcp_url():
    config = parse_database_url("postgresql://shop:s%40cret@db.example:6543/shopdb?sslmode=require")
    assert config["HOST"] == "db.example"
    assert config["PORT"] == "6543"
    assert config["USER"] == "shop"
    assert config["PASSWORD"] == "s@cret"
    assert config["NAME"] == "shopdb"
    assert config["OPTIONS"] == {"sslmode": "require"}


def test_unix_socket_url():
    config = parse_database_url("postgresql://postgres:@/shopguide?host=/srv/var/pgdata")
    assert config["HOST"] == "/srv/var/pgdata"
    assert config["NAME"] == "shopguide"
    assert config["OPTIONS"] == {}


def test_other_schemes_are_refused():
    with pytest.raises(ValueError, match="postgresql://"):
        parse_database_url("mysql://root@localhost/shop")
