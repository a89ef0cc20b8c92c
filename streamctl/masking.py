"""Stream keys are secrets: find them in URLs and mask them wherever text leaves the process."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

MASK = "****"
MIN_KEY = 8  # shortest stream key accepted: shorter ones would collide with ordinary text when masked
STREAM_SCHEMES = ("rtmp", "rtmps", "srt")


def is_stream_url(url: str) -> bool:
    return urlsplit(url).scheme.lower() in STREAM_SCHEMES


def url_secrets(url: str) -> list[str]:
    """The secret parts of a stream URL: the path after the application name, query, user info."""
    if not is_stream_url(url):
        return []
    parts = urlsplit(url)
    out = []
    if "@" in parts.netloc:
        out.append(parts.netloc.rsplit("@", 1)[0])
    segments = parts.path.split("/")
    if len([s for s in segments if s]) >= 2:  # rtmp://host/app/KEY
        out.append("/".join(segments[2:]))
    if "?" in url:  # query and fragment: an SRT streamid (#!::r=live/KEY) lands in the fragment
        out.append(url.split("?", 1)[1])
    elif parts.fragment:
        out.append(parts.fragment)
    return [s for s in out if s]


def mask_url(url: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """URL with its secret parts masked: known keys, the stream-key path segment, query, password."""
    url = mask_text(url, secrets)
    if not is_stream_url(url):
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
    path = parts.path
    segments = path.split("/")
    if len([s for s in segments if s]) >= 2:
        path = "/" + segments[1] + "/" + MASK
    query = MASK if parts.query or parts.fragment or "?" in url else ""
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def mask_text(text: str, secrets: list[str] | tuple[str, ...]) -> str:
    """TEXT with every secret masked.

    The rule: a secret of MIN_KEY characters or more (every stream key: shorter ones are refused) is
    masked wherever it appears. A shorter one can only be part of a URL (`rtmp://host/live/test`) and is
    masked where it stands as a whole token, never inside a longer run of letters, digits, '.', '_' or
    '-': a short URL key never masks part of an ordinary word ("backup") or of an address ("127.0.0.1").
    """
    import re

    for s in sorted(secrets, key=len, reverse=True):  # longest first: a key inside a longer secret
        if not s or s not in text:
            continue
        if len(s) >= MIN_KEY:
            text = text.replace(s, MASK)
        else:
            text = re.sub(rf"(?<![\w.-]){re.escape(s)}(?![\w.-])", MASK, text)
    return text


def masked_argv(argv: list[str], secrets: list[str] | tuple[str, ...] = ()) -> list[str]:
    """ARGV fit to store and show: every URL's secret parts masked."""
    return [mask_url(a, secrets) if "://" in a else mask_text(a, secrets) for a in argv]
