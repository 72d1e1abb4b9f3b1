"""Settings: `feedsvc.toml` plus `FEEDSVC_<KEY>` environment overrides, validated once.

Everything else receives a frozen `Settings`; nothing reads the environment later.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from feedsvc.errors import ConfigError
from feedsvc.model import is_valid_name

CONFIG_FILE = "feedsvc.toml"
ENV_PREFIX = "FEEDSVC_"
#: `base_url` when it is set nowhere and the address the server listens on is unknown.
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
#: The variables read besides `FEEDSVC_<KEY>` for the keys of feedsvc.toml.
OTHER_VARIABLES = (ENV_PREFIX + "CONFIG", ENV_PREFIX + "HEADER_TIMEOUT")


#: Field metadata: whether a setting can change any byte of a feed or page (`output`),
#: and whether parsing an item file or rendering its body reads it (`parsing`). The
#: persistent cache keys rendered documents by the first kind and parsed rows and bodies
#: by the second, so a setting that changes neither keeps what is cached.
_OUTPUT: Mapping[str, bool] = {"output": True, "parsing": False}
_PARSING: Mapping[str, bool] = {"output": True, "parsing": True}
_NOT_OUTPUT: Mapping[str, bool] = {"output": False, "parsing": False}


@dataclass(frozen=True, slots=True)
class Settings:
    """The site's configuration, one field per key of `feedsvc.toml`.

    Every field says in its metadata whether output depends on it (see `_OUTPUT`).
    """

    title: str = field(default="feedsvc", metadata=_OUTPUT)
    description: str = field(default="Latest items", metadata=_OUTPUT)
    base_url: str = field(default=DEFAULT_BASE_URL, metadata=_PARSING)  # ids, links
    author: str = field(default="feedsvc", metadata=_PARSING)  # an item's default author
    language: str = field(default="en", metadata=_OUTPUT)
    timezone: str = field(default="UTC", metadata=_PARSING)  # dates without an offset
    # Items are known by their path inside the folder and their bytes, never by where
    # the folder is.
    items_dir: Path = field(default=Path("items"), metadata=_NOT_OUTPUT)
    feed_size: int = field(default=50, metadata=_OUTPUT)
    weekly_size: int = field(default=12, metadata=_OUTPUT)
    weekly_title: str = field(default="{site} weekly roundup: {start} to {end}", metadata=_OUTPUT)
    weekly_publish: Literal["end", "rolling"] = field(default="end", metadata=_OUTPUT)
    weekly_full_content: bool = field(default=True, metadata=_OUTPUT)
    weekly_footer: str = field(default="", metadata=_OUTPUT)
    week_starts_on: Literal["monday", "sunday"] = field(default="monday", metadata=_OUTPUT)
    categories: tuple[tuple[str, str], ...] = field(default=(), metadata=_OUTPUT)
    # Every tag has a page; a tag has feeds once this many items carry it.
    tag_feed_min_items: int = field(default=1, metadata=_OUTPUT)
    page_size: int = field(default=20, metadata=_OUTPUT)  # items per HTML list page
    # The site's icon: a PNG, GIF, JPEG or ICO file, or an http(s) URL; "" for feedsvc's.
    icon: str = field(default="", metadata=_OUTPUT)
    # WebSub hubs every feed names, and which feedsvc tells of each change of a feed.
    websub_hubs: tuple[str, ...] = field(default=(), metadata=_OUTPUT)
    # A hub of feedsvc's own at <base_url>/websub (feedsvc.hub), named beside them.
    websub_hub: bool = field(default=False, metadata=_OUTPUT)
    # CIDR ranges the hub may call back although they are not public (127.0.0.1/32, say).
    websub_allowed_callbacks: tuple[str, ...] = field(default=(), metadata=_NOT_OUTPUT)
    # HTTP freshness alone: the response headers, not the bytes.
    cache_max_age: int = field(default=300, metadata=_NOT_OUTPUT)
    # The persistent cache; None: none (load_settings sets one).
    cache_dir: Path | None = field(default=None, metadata=_NOT_OUTPUT)
    # Derived from `timezone`, which stands for it in the keys.
    zone: ZoneInfo = field(init=False, repr=False, compare=False, metadata=_NOT_OUTPUT)

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        object.__setattr__(self, "zone", ZoneInfo(self.timezone))

    @property
    def domain(self) -> str:
        """The host of `base_url`: the tagging authority of default item ids."""
        return urlsplit(self.base_url).hostname or "localhost"

    @property
    def icon_url(self) -> str:
        """Where feeds and pages point for the icon: the `icon` URL, or this site's copy
        of the icon file (served at /icon.<suffix> and /favicon.ico)."""
        if self.icon.startswith(("http://", "https://")):
            return self.icon
        suffix = Path(self.icon).suffix.lower() if self.icon else ".png"
        return f"{self.base_url}/icon{'.jpg' if suffix == '.jpeg' else suffix}"

    @property
    def advertised_hubs(self) -> tuple[str, ...]:
        """The hubs every feed names: `websub_hubs`, then feedsvc's own if it is on."""
        own = (self.base_url + "/websub",) if self.websub_hub else ()
        return (*self.websub_hubs, *own)

    def category_name(self, slug: str) -> str:
        """The display name configured for a category, else one made from its slug."""
        for known, name in self.categories:
            if known == slug:
                return name
        return slug.replace("-", " ").capitalize()

    def category_rank(self, slug: str) -> tuple[int, str]:
        """Sort key: configured categories in their order, then the rest by name."""
        for position, (known, _name) in enumerate(self.categories):
            if known == slug:
                return (position, slug)
        return (len(self.categories), slug)

    def output_key(self) -> str:
        """The settings any byte of a feed or page depends on, as stable text: a rendered
        document's key in the persistent cache covers these and no other setting."""
        return repr(tuple((name, getattr(self, name)) for name in OUTPUT_FIELDS))

    def parsing_key(self) -> str:
        """The settings parsing an item file or rendering its body reads, as stable text:
        the key of the cache's parsed rows and bodies, a subset of `output_key`'s."""
        return repr(tuple((name, getattr(self, name)) for name in PARSING_FIELDS))


# Deciding is not optional: a new setting without the metadata fails here, at import.
assert all({"output", "parsing"} <= set(f.metadata) for f in fields(Settings))
#: The settings `output_key` and `parsing_key` cover, by name, in the class's order.
OUTPUT_FIELDS = tuple(f.name for f in fields(Settings) if f.init and f.metadata["output"])
PARSING_FIELDS = tuple(f.name for f in fields(Settings) if f.init and f.metadata["parsing"])
assert set(PARSING_FIELDS) <= set(OUTPUT_FIELDS)


def nearest(word: str, known: Iterable[str]) -> str | None:
    """The known name `word` most likely misspells, if any is close (difflib's ratio)."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return close[0] if close else None


def _text(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string, not {value!r}")
    return value


def _positive_int(key: str, value: object) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ConfigError(f"{key} must be a whole number, not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key} must be a whole number of at least 1, not {value!r}")
    return value


def _non_negative_int(key: str, value: object) -> int:
    if value in (0, "0"):
        return 0
    return _positive_int(key, value)


def _boolean(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "1", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "0", "no", "off"}:
        return False
    raise ConfigError(f"{key} must be true or false, not {value!r}")


def _choice(*allowed: str) -> Callable[[str, object], str]:
    def check(key: str, value: object) -> str:
        if isinstance(value, str) and value.strip().lower() in allowed:
            return value.strip().lower()
        raise ConfigError(f"{key} must be one of {', '.join(allowed)}, not {value!r}")

    return check


def _base_url(key: str, value: object) -> str:
    text = _text(key, value).strip()
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"{key} must be an absolute http(s) URL, not {value!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"{key} must not have a query or fragment: {value!r}")
    return text


#: The icon formats every feed reader shows (RSS allows GIF, JPEG and PNG), by their
#: first bytes, with their file suffixes.
ICON_FORMATS = {
    b"\x89PNG\r\n\x1a\n": ("image/png", (".png",)),
    b"GIF87a": ("image/gif", (".gif",)),
    b"GIF89a": ("image/gif", (".gif",)),
    b"\xff\xd8\xff": ("image/jpeg", (".jpg", ".jpeg")),
    b"\x00\x00\x01\x00": ("image/x-icon", (".ico",)),
}
ICON_MAX_BYTES = 1024 * 1024


def icon_type(path: Path) -> str:
    """The content type of an icon file; ConfigError unless it is one of ICON_FORMATS with
    a suffix that says so, at most ICON_MAX_BYTES."""
    try:
        with path.open("rb") as file:
            head = file.read(8)
            size = os.fstat(file.fileno()).st_size
    except OSError as error:
        raise ConfigError(f"icon: cannot read {path}: {error.strerror or error}") from None
    for magic, (content_type, suffixes) in ICON_FORMATS.items():
        if head.startswith(magic):
            if path.suffix.lower() not in suffixes:
                raise ConfigError(f"icon: {path} is {content_type}; name it *{suffixes[0]}")
            if size > ICON_MAX_BYTES:
                raise ConfigError(f"icon: {path} is {size:,} bytes; at most 1 MiB")
            return content_type
    raise ConfigError(f"icon: {path} is not a PNG, GIF, JPEG or ICO image")


def _icon(key: str, value: object) -> str:
    text = _text(key, value).strip()
    if text.startswith(("http://", "https://")):
        return _base_url(key, text)
    return text


def _timezone(key: str, value: object) -> str:
    name = _text(key, value).strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        message = f"{key} must be an IANA time zone such as Europe/Paris, not {value!r}"
        raise ConfigError(message) from None
    return name


def _weekly_title(key: str, value: object) -> str:
    template = _text(key, value)
    try:
        template.format(site="", start="", end="", week="")
    except (KeyError, IndexError, ValueError) as error:
        raise ConfigError(
            f"{key} may use only {{site}}, {{start}}, {{end}} and {{week}}: {error}"
        ) from None
    return template


def _urls(key: str, value: object) -> tuple[str, ...]:
    """A TOML list of http(s) URLs, or in the environment URLs separated by commas."""
    if isinstance(value, str):
        value = [part for part in (p.strip() for p in value.split(",")) if part]
    if not isinstance(value, list):
        raise ConfigError(f"{key} must be a list of http(s) URLs, not {value!r}")
    return tuple(dict.fromkeys(_base_url(f"{key}[{n}]", url) for n, url in enumerate(value)))


def _networks(key: str, value: object) -> tuple[str, ...]:
    """A TOML list of CIDR ranges, or in the environment ranges separated by commas."""
    if isinstance(value, str):
        value = [part for part in (p.strip() for p in value.split(",")) if part]
    if not isinstance(value, list):
        raise ConfigError(f"{key} must be a list of CIDR ranges such as 10.0.0.0/8, not {value!r}")
    networks = []
    for item in value:
        try:
            networks.append(str(ipaddress.ip_network(str(item).strip(), strict=False)))
        except ValueError:
            raise ConfigError(f"{key}: {item!r} is not a CIDR range such as 10.0.0.0/8") from None
    return tuple(networks)


def _categories(key: str, value: object) -> tuple[tuple[str, str], ...]:
    """A TOML table `slug = "Display name"`, or in the environment `slug=Name,slug2`."""
    pairs: list[tuple[str, str]] = []
    if isinstance(value, str):
        for part in filter(None, (p.strip() for p in value.split(","))):
            slug, _, name = part.partition("=")
            pairs.append((slug.strip(), name.strip() or slug.strip()))
    elif isinstance(value, Mapping):
        pairs = [(str(slug), _text(f"{key}.{slug}", name)) for slug, name in value.items()]
    else:
        raise ConfigError(f'{key} must be a table of slug = "Display name", not {value!r}')
    for slug, _name in pairs:
        if not is_valid_name(slug):
            raise ConfigError(f"{key}: {slug!r} is not a category name (lowercase a-z, 0-9, -)")
    return tuple(pairs)


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "title": _text,
    "description": _text,
    "base_url": _base_url,
    "author": _text,
    "language": _text,
    "timezone": _timezone,
    "items_dir": lambda key, value: Path(_text(key, value)),
    "feed_size": _positive_int,
    "weekly_size": _positive_int,
    "weekly_title": _weekly_title,
    "weekly_publish": _choice("end", "rolling"),
    "weekly_full_content": _boolean,
    "weekly_footer": _text,
    "week_starts_on": _choice("monday", "sunday"),
    "categories": _categories,
    "tag_feed_min_items": _positive_int,
    "page_size": _positive_int,
    "icon": _icon,
    "websub_hubs": _urls,
    "websub_hub": _boolean,
    "websub_allowed_callbacks": _networks,
    "cache_max_age": _non_negative_int,
    "cache_dir": lambda key, value: Path(_text(key, value)) if _text(key, value) else None,
}
assert set(_CHECKS) == {f.name for f in fields(Settings) if f.init}


def load_settings(
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    *,
    listening: str | None = None,
) -> Settings:
    """Read the configuration file and the environment; raise ConfigError naming a bad key.

    A relative `items_dir` from the file (and the default, `items`, when there is a
    file) is taken relative to the file; one from the environment relative to the
    working directory. `listening` is the base URL of the address the server listens on
    (`listening_url`): `base_url` when neither the file nor the environment sets it.
    """
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    named = environ.get(ENV_PREFIX + "CONFIG")
    path = cwd / (named or CONFIG_FILE)
    raw: dict[str, Any] = {}
    if path.is_file():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path}: not valid TOML: {error}") from None
    elif named:
        raise ConfigError(f"FEEDSVC_CONFIG names {path}, which does not exist")
    unknown = sorted(set(raw) - set(_CHECKS))
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; known keys: {', '.join(_CHECKS)}")

    values = {key: _CHECKS[key](key, value) for key, value in raw.items()}
    for key in ("items_dir", "cache_dir"):
        if values.get(key) is not None:
            values[key] = path.parent / values[key]
    if _is_file_icon(values.get("icon", "")):
        values["icon"] = str(path.parent / values["icon"])
    for key, check in _CHECKS.items():
        env_value = environ.get(ENV_PREFIX + key.upper())
        if env_value is not None:
            values[key] = check(ENV_PREFIX + key.upper(), env_value)
            if key in ("items_dir", "cache_dir") and values[key] is not None:
                values[key] = cwd / values[key]
            if key == "icon" and _is_file_icon(values[key]):
                values[key] = str(cwd / values[key])
    if listening is not None:
        values.setdefault("base_url", listening)
    values.setdefault("items_dir", (path.parent if path.is_file() else cwd) / "items")
    values.setdefault("cache_dir", values["items_dir"].parent / ".feedsvc-cache")
    if _is_file_icon(values.get("icon", "")):
        icon_type(Path(values["icon"]))  # a missing or wrong file stops the start here
    return Settings(**values)


def _is_file_icon(icon: str) -> bool:
    return bool(icon) and not icon.startswith(("http://", "https://"))


def known_variables() -> tuple[str, ...]:
    """Every environment variable feedsvc reads."""
    return (*(ENV_PREFIX + key.upper() for key in _CHECKS), *OTHER_VARIABLES)


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """A warning for each `FEEDSVC_*` variable that feedsvc does not read (a typo such as
    FEEDSVC_BASEURL would otherwise be ignored in silence), naming the nearest it does."""
    environ = os.environ if environ is None else environ
    known = known_variables()
    warnings = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in known:
            continue
        close = nearest(name, known)
        hint = (
            f"did you mean {close}?"
            if close
            else "the variables are FEEDSVC_<KEY> for a key of feedsvc.toml, FEEDSVC_CONFIG "
            "and FEEDSVC_HEADER_TIMEOUT"
        )
        warnings.append(f"{name} is not a feedsvc setting and is ignored; {hint}")
    return warnings


def listening_url(host: str, port: int, scheme: str = "http") -> str:
    """The base URL of a server listening on `host`:`port`. An address of every interface
    (0.0.0.0, ::, or none) names no host a reader could use: the loopback address stands
    for it (and `loopback_warning` says so)."""
    name = host.strip().removeprefix("[").removesuffix("]") or "0.0.0.0"
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(name)
    except ValueError:
        address = None  # a host name
    if address is not None:
        if address.is_unspecified:
            address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
        name = f"[{address}]" if address.version == 6 else str(address)
    default_port = 443 if scheme == "https" else 80
    return f"{scheme}://{name}" + ("" if port == default_port else f":{port}")


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address, brackets or not) is this machine alone."""
    name = host.strip().removeprefix("[").removesuffix("]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def loopback_warning(settings: Settings, listening_host: str | None = None) -> str | None:
    """Why `base_url` will not do, if it names this machine alone: for an export (no
    `listening_host`) always, for a server only when it listens on other addresses too,
    where readers elsewhere would get links and ids they cannot follow."""
    if not is_loopback(settings.domain):
        return None
    fix = "set base_url (in feedsvc.toml, or FEEDSVC_BASE_URL) to the address readers use"
    if listening_host is None:
        return (f"base_url is {settings.base_url}, this machine alone: every link and id in "
                f"the export points there; {fix}")  # fmt: skip
    if is_loopback(listening_host):
        return None
    shown = listening_host or "every address"
    return (f"listening on {shown}, but base_url is {settings.base_url}, this machine alone: "
            f"readers elsewhere get links and ids they cannot follow; {fix}")  # fmt: skip
