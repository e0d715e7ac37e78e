"""Masking secrets in text meant for people: log lines, `check` and `status` output.

Pure. `mask_secrets` replaces with `***` the password of any URL
(`scheme://user:password@host`, the password running to the last `@` of the
URL, so one holding `@ : / %` is masked whole), a `password=` query
parameter, and the value of a libpq `password=` keyword (quoted or not).
It masks too much rather than too little: an `@` later in a URL takes the
host with it.
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://user:password@ -- `\S*` runs to the last `@` before white space.
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)([^\s:/@'\"]*):\S*@")
# ?password=... or &password=... in a URL's query.
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&\s'\"]*", re.IGNORECASE)
# password=value or password = 'quoted \' value' in a libpq keyword/value string.
_DSN_PASSWORD = re.compile(r"(?<![?&\w])(password\s*=\s*)('(?:\\.|[^'\\])*'?|[^\s'\"]+)",
                           re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """`text` with every password it holds replaced by `***`."""
    if "password" not in text.lower() and "@" not in text:
        return text  # the common case: a log line with nothing to mask
    masked = _URL_PASSWORD.sub(rf"\1\2:{MASK}@", text)
    masked = _QUERY_PASSWORD.sub(rf"\1{MASK}", masked)
    return _DSN_PASSWORD.sub(rf"\1{MASK}", masked)


def has_url_password(url: str) -> bool:
    """True when `url` holds a password (`scheme://user:password@...`)."""
    return _URL_PASSWORD.search(url) is not None or _QUERY_PASSWORD.search(url) is not None
