"""The exceptions callers may catch; a bad item file is a `Problem` value, not one of these."""


class FeedsvcError(Exception):
    """Base of every error feedsvc raises on purpose."""


class ConfigError(FeedsvcError):
    """A configuration value is missing or wrong; the message names the key."""
