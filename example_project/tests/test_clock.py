from datetime import UTC, datetime

import pytest

from chat.clock import UnknownCity, describe_time, zone_for

NOON_UTC = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_city_named_in_a_zone_is_found_in_any_case() -> None:
    assert zone_for("tokyo") == "Asia/Tokyo"
    assert zone_for("Buenos Aires") == "America/Argentina/Buenos_Aires"


def test_cities_without_their_own_zone_use_the_aliases() -> None:
    assert zone_for("New York") == "America/New_York"
    assert zone_for("Munich") == "Europe/Berlin"


def test_time_is_given_in_the_city_with_its_offset() -> None:
    assert describe_time("Tokyo", NOON_UTC) == (
        "Tokyo (Asia/Tokyo): 21:00 on Sunday 1 June 2025, UTC+09:00"
    )
    assert describe_time("new york", NOON_UTC).startswith("New York (America/New_York): 08:00")


def test_unknown_city_raises() -> None:
    with pytest.raises(UnknownCity):
        zone_for("Atlantis")
