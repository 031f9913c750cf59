"""Passwords out of every message about a database URL (``--storage``).

A storage URL may carry a password in its user part (``postgresql://user:SECRET@host/db``) or in its
query string (``...?password=SECRET``, as libpq and SQLAlchemy accept). :func:`hide_password` shows a
URL without them; :func:`redact` removes them from any text (a driver's error message may quote the
URL or parts of it), both the given URL's own secrets and anything shaped like one. The CLI passes
every error line through :func:`redact` as well, so no message path can print a password.
"""
from __future__ import annotations

import re
from typing import Iterable, List, Optional
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "***"
#: query-string keys whose values are secrets
SECRET_KEYS = ("password", "passwd", "pwd", "pass", "secret", "token", "sslpassword", "api_key", "apikey")
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*:)(?P<secret>[^@\s]*)(?P<at>@)")
_QUERY = re.compile(r"(?P<head>[?&;\s](?:%s)=)(?P<secret>[^&;\s'\"]*?)(?=$|[&;\s'\"]|[:,.)](?:\s|$))"
                    % "|".join(SECRET_KEYS), re.IGNORECASE)


def _secrets(url: Optional[str]) -> List[str]:
    """The password-like parts of ``url`` (raw and percent-decoded)."""
    if not url:
        return []
    found: List[str] = []
    try:
        parts = urlsplit(url)
        if parts.password:
            found.append(parts.password)
        for key, value in parse_qsl(parts.query, keep_blank_values=False):
            if key.lower() in SECRET_KEYS and value:
                found.append(value)
    except ValueError:  # not parseable as a URL: only the patterns below apply
        pass
    match = _USERINFO.search(url)
    if match and match.group("secret"):
        found.append(match.group("secret"))
    found += [m.group("secret") for m in _QUERY.finditer(url) if m.group("secret")]
    return sorted({s for text in found for s in (text, unquote(text))}, key=len, reverse=True)


def redact(text: str, urls: Iterable[Optional[str]] = ()) -> str:
    """``text`` with the secrets of ``urls``, and anything shaped like a URL password, replaced by ***."""
    text = str(text)
    for secret in (s for url in urls for s in _secrets(url)):  # as a token: a short one is not hunted inside words
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", MASK, text)
    text = _USERINFO.sub(lambda m: f"{m.group('head')}{MASK if m.group('secret') else ''}{m.group('at')}", text)
    return _QUERY.sub(lambda m: f"{m.group('head')}{MASK}", text)


def hide_password(url: str) -> str:
    """``url`` as it may be shown: user part and query-string passwords replaced by ***."""
    return redact(url, [url])
