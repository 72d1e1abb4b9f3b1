"""Configuration: feedsvc.toml, FEEDSVC_CONFIG, FEEDSVC_<KEY> and clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from feedsvc.config import load_settings
from feedsvc.errors import ConfigError

SITE_TOML = """\
title = "Harbour News"
description = "What came in on the tide"
base_url = "https://harbour.example/news/"
author = "Harbour Desk"
language = "fr"
timezone = "Europe/Paris"
items_dir = "content"
feed_size = 20
weekly_size = 4
weekly_title = "{site} week {week}"
weekly_publish = "rolling"
weekly_full_content = false
weekly_footer = "Thanks for reading."
week_starts_on = "sunday"
cache_max_age = 0

[categories]
boats = "Boats & Ships"
fish = "Fish"
"""


def write(folder: Path, text: str, name: str = "feedsvc.toml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file(tmp_path: Path) -> None:
    settings = load_settings(environ={}, cwd=tmp_path)

    assert settings.timezone == "UTC"
    assert settings.items_dir == tmp_path / "items"
    assert settings.feed_size == 50
    assert settings.weekly_size == 12
    assert settings.weekly_title == "{site} weekly roundup: {start} to {end}"
    assert settings.weekly_publish == "end"
    assert settings.weekly_full_content is True
    assert settings.week_starts_on == "monday"
    assert settings.categories == ()
    assert settings.cache_max_age == 300
    assert settings.base_url.startswith(("http://", "https://"))


def test_values_come_from_feedsvc_toml(tmp_path: Path) -> None:
    write(tmp_path, SITE_TOML)

    settings = load_settings(environ={}, cwd=tmp_path)

    assert settings.title == "Harbour News"
    assert settings.description == "What came in on the tide"
    assert settings.base_url == "https://harbour.example/news"
    assert settings.author == "Harbour Desk"
    assert settings.language == "fr"
    assert settings.timezone == "Europe/Paris"
    assert settings.items_dir == tmp_path / "content"
    assert settings.feed_size == 20
    assert settings.weekly_size == 4
    assert settings.weekly_title == "{site} week {week}"
    assert settings.weekly_publish == "rolling"
    assert settings.weekly_full_content is False
    assert settings.weekly_footer == "Thanks for reading."
    assert settings.week_starts_on == "sunday"
    assert settings.cache_max_age == 0
    assert settings.categories == (("boats", "Boats & Ships"), ("fish", "Fish"))


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    write(tmp_path, SITE_TOML)
    environ = {
        "FEEDSVC_FEED_SIZE": "10",
        "FEEDSVC_TIMEZONE": "America/New_York",
        "FEEDSVC_CATEGORIES": "a=Alpha,b",
        "FEEDSVC_WEEKLY_FULL_CONTENT": "true",
        "FEEDSVC_TITLE": "Overridden",
    }

    settings = load_settings(environ=environ, cwd=tmp_path)

    assert settings.feed_size == 10
    assert settings.timezone == "America/New_York"
    assert [slug for slug, _name in settings.categories] == ["a", "b"]
    assert settings.category_name("a") == "Alpha"
    assert settings.category_rank("b") < settings.category_rank("boats")
    assert settings.weekly_full_content is True
    assert settings.title == "Overridden"
    assert settings.author == "Harbour Desk"  # not overridden: still from the file


def test_environment_works_without_a_file(tmp_path: Path) -> None:
    settings = load_settings(environ={"FEEDSVC_FEED_SIZE": "10"}, cwd=tmp_path)

    assert settings.feed_size == 10


def test_feedsvc_config_names_another_file(tmp_path: Path) -> None:
    write(tmp_path, 'title = "Ignored"\n')
    write(tmp_path, SITE_TOML, "conf/site.toml")

    settings = load_settings(environ={"FEEDSVC_CONFIG": "conf/site.toml"}, cwd=tmp_path)

    assert settings.title == "Harbour News"


def test_feedsvc_config_may_be_absolute(tmp_path: Path) -> None:
    path = write(tmp_path / "elsewhere", SITE_TOML, "site.toml")

    settings = load_settings(environ={"FEEDSVC_CONFIG": str(path)}, cwd=tmp_path / "run")

    assert settings.title == "Harbour News"
    assert settings.items_dir == tmp_path / "elsewhere" / "content"


def test_relative_items_dir_is_relative_to_the_file_folder(tmp_path: Path) -> None:
    write(tmp_path, 'items_dir = "../elsewhere/items"\n', "conf/site.toml")

    settings = load_settings(environ={"FEEDSVC_CONFIG": "conf/site.toml"}, cwd=tmp_path)

    assert settings.items_dir.resolve() == (tmp_path / "elsewhere" / "items").resolve()


def test_default_items_dir_sits_beside_the_configuration_file(tmp_path: Path) -> None:
    write(tmp_path, 'title = "Elsewhere"\n', "conf/site.toml")

    named = str(tmp_path / "conf" / "site.toml")
    settings = load_settings(environ={"FEEDSVC_CONFIG": named}, cwd=tmp_path / "run")

    assert settings.items_dir == tmp_path / "conf" / "items"


def test_default_items_dir_without_a_file_is_in_the_working_directory(tmp_path: Path) -> None:
    assert load_settings(environ={}, cwd=tmp_path).items_dir == tmp_path / "items"


def test_absolute_items_dir_is_kept(tmp_path: Path) -> None:
    write(tmp_path, f'items_dir = "{(tmp_path / "abs").as_posix()}"\n', "conf/site.toml")

    settings = load_settings(environ={"FEEDSVC_CONFIG": "conf/site.toml"}, cwd=tmp_path)

    assert settings.items_dir == tmp_path / "abs"


def test_missing_feedsvc_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="FEEDSVC_CONFIG") as raised:
        load_settings(environ={"FEEDSVC_CONFIG": "nowhere.toml"}, cwd=tmp_path)

    assert "nowhere.toml" in str(raised.value)


BAD_FILE_VALUES = [
    pytest.param("feed_size", "feed_size = 0", id="feed_size-zero"),
    pytest.param("feed_size", 'feed_size = "ten"', id="feed_size-words"),
    pytest.param("feed_size", "feed_size = -3", id="feed_size-negative"),
    pytest.param("feed_size", "feed_size = true", id="feed_size-boolean"),
    pytest.param("weekly_size", "weekly_size = 0", id="weekly_size-zero"),
    pytest.param("timezone", 'timezone = "Mars/Base"', id="timezone-unknown"),
    pytest.param("timezone", 'timezone = "../../etc/passwd"', id="timezone-path"),
    pytest.param("base_url", 'base_url = "ftp://x"', id="base_url-ftp"),
    pytest.param("base_url", 'base_url = "not a url"', id="base_url-not-a-url"),
    pytest.param("base_url", 'base_url = "https://x.example/?q=1"', id="base_url-query"),
    pytest.param("weekly_publish", 'weekly_publish = "sometimes"', id="weekly_publish"),
    pytest.param("week_starts_on", 'week_starts_on = "friday"', id="week_starts_on"),
    pytest.param("weekly_title", 'weekly_title = "{nope}"', id="weekly_title-unknown-field"),
    pytest.param("weekly_title", 'weekly_title = "{site"', id="weekly_title-unclosed"),
    pytest.param("weekly_full_content", 'weekly_full_content = "maybe"', id="weekly_full"),
    pytest.param("cache_max_age", "cache_max_age = -1", id="cache_max_age-negative"),
    pytest.param("title", "title = 3", id="title-not-text"),
    pytest.param("colour", 'colour = "blue"', id="unknown-key"),
    pytest.param("categories", '[categories]\n"Bad Name" = "Bad"', id="categories-bad-slug"),
    pytest.param("categories", "categories = 3", id="categories-not-a-table"),
]


@pytest.mark.parametrize(("key", "line"), BAD_FILE_VALUES)
def test_bad_value_in_the_file_names_the_key(tmp_path: Path, key: str, line: str) -> None:
    write(tmp_path, line + "\n")

    with pytest.raises(ConfigError) as raised:
        load_settings(environ={}, cwd=tmp_path)

    assert key in str(raised.value)


BAD_ENVIRONMENT_VALUES = [
    pytest.param("FEEDSVC_FEED_SIZE", "0", id="feed_size-zero"),
    pytest.param("FEEDSVC_FEED_SIZE", "ten", id="feed_size-words"),
    pytest.param("FEEDSVC_TIMEZONE", "Mars/Base", id="timezone"),
    pytest.param("FEEDSVC_BASE_URL", "ftp://x", id="base_url-ftp"),
    pytest.param("FEEDSVC_BASE_URL", "not a url", id="base_url-not-a-url"),
    pytest.param("FEEDSVC_WEEKLY_PUBLISH", "sometimes", id="weekly_publish"),
    pytest.param("FEEDSVC_WEEK_STARTS_ON", "friday", id="week_starts_on"),
    pytest.param("FEEDSVC_WEEKLY_TITLE", "{nope}", id="weekly_title"),
    pytest.param("FEEDSVC_WEEKLY_FULL_CONTENT", "maybe", id="weekly_full_content"),
    pytest.param("FEEDSVC_CATEGORIES", "Bad Name=Bad", id="categories-bad-slug"),
]


@pytest.mark.parametrize(("variable", "value"), BAD_ENVIRONMENT_VALUES)
def test_bad_value_in_the_environment_names_the_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={variable: value}, cwd=tmp_path)

    assert variable in str(raised.value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'title = "unclosed\nfeed_size = 10\n')

    with pytest.raises(ConfigError) as raised:
        load_settings(environ={}, cwd=tmp_path)

    assert str(path) in str(raised.value)
    assert "TOML" in str(raised.value)


def test_unknown_key_is_named_in_the_message(tmp_path: Path) -> None:
    write(tmp_path, 'title = "ok"\nfeedsize = 10\n')

    with pytest.raises(ConfigError, match="'feedsize'"):
        load_settings(environ={}, cwd=tmp_path)


def test_config_file_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "feedsvc.toml").write_bytes('title = "Café"\n'.encode("latin-1"))

    with pytest.raises(ConfigError, match=re.escape("feedsvc.toml")):
        load_settings(environ={}, cwd=tmp_path)
