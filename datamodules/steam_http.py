"""A small JSON-over-HTTP client for Steam's store API: bounded retries with backoff, one origin only."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from email.utils import parsedate_to_datetime

__all__ = ["SteamAPIError", "SteamClient", "retry_after_seconds"]


class SteamAPIError(RuntimeError):
    """A request to Steam failed for good, reported as one line that names the URL and the reason."""


def _origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def retry_after_seconds(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    # urllib follows redirects anywhere by default; the downloader promises to talk to one origin only.
    def __init__(self, origin: tuple[str, str]) -> None:
        self.origin = origin

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 (urllib's signature)
        target = urllib.parse.urljoin(req.full_url, newurl)
        if _origin(target) != self.origin:
            raise SteamAPIError(f"{req.full_url}: HTTP {code} redirect to {target} leaves {'://'.join(self.origin)}; refusing")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class SteamClient:
    """GET JSON from one base URL, retrying HTTP 429, 5xx and network errors with exponential backoff.

    The wait before retry ``k`` (0-based) is the server's ``Retry-After`` when given, else
    ``backoff * 2**k``, capped at ``max_delay``. No jitter: one sequential client gains nothing
    from it, and fixed waits keep the tests exact.

    Args:
        base_url: scheme and host (optionally a path prefix) of every request; nothing else is contacted.
        max_retries: retries after the first attempt before giving up with :class:`SteamAPIError`.
        backoff: seconds before the first retry; doubles with each further retry.
        max_delay: longest single wait in seconds, also for a large ``Retry-After``.
        timeout: socket timeout per request in seconds.
        sleep: the sleep function (injected by tests so that backoff costs no time).
        user_agent: the ``User-Agent`` header sent.
    """

    def __init__(
        self,
        base_url: str = "https://store.steampowered.com",
        max_retries: int = 5,
        backoff: float = 2.0,
        max_delay: float = 120.0,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        user_agent: str = "distillery-steam-download/0.1",
    ) -> None:
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"base_url={base_url!r} must start with http:// or https://")
        if max_retries < 0:
            raise ValueError(f"max_retries={max_retries} must be >= 0")
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_delay = max_delay
        self.timeout = timeout
        self.sleep = sleep
        self.user_agent = user_agent
        self._opener = urllib.request.build_opener(_SameOriginRedirects(_origin(self.base_url)))

    def url(self, path: str, params: dict[str, str | int]) -> str:
        """The full URL for ``path`` under the base URL; every parameter (cursors included) is percent-encoded."""
        return f"{self.base_url}/{path.lstrip('/')}?{urllib.parse.urlencode(params)}"

    def get_json(self, path: str, params: dict[str, str | int]) -> dict:
        """GET ``path`` with ``params`` and decode the JSON object it returns.

        Raises:
            SteamAPIError: a 4xx other than 429 (at once), retries used up, a refused redirect, or a
                body that is not a JSON object.
        """
        url = self.url(path, params)
        request = urllib.request.Request(url, headers={"User-Agent": self.user_agent, "Accept": "application/json"})
        for attempt in range(self.max_retries + 1):
            wait = None
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    body = response.read()
            except urllib.error.HTTPError as e:
                e.close()
                if e.code != 429 and e.code < 500:
                    raise SteamAPIError(f"{url}: HTTP {e.code} {e.reason}") from None
                last = f"HTTP {e.code} {e.reason}"
                wait = retry_after_seconds(e.headers.get("Retry-After") if e.headers else None)
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            else:
                try:
                    data = json.loads(body)
                except ValueError:
                    raise SteamAPIError(f"{url}: the response is not JSON (starts {body[:60]!r})") from None
                if not isinstance(data, dict):
                    raise SteamAPIError(f"{url}: expected a JSON object, got {type(data).__name__}")
                return data
            if attempt == self.max_retries:
                break
            self.sleep(min(self.max_delay, wait if wait is not None else self.backoff * 2**attempt))
        raise SteamAPIError(f"{url}: giving up after {self.max_retries + 1} attempt(s); last error: {last}")
