"""Download Steam user reviews into the CSV that :class:`SteamReviewsDataModule` reads, resumably.

``python -m datamodules.steam_download --app-ids 322170 --out reviews.csv``

Pages of 100 reviews are fetched with Steam's cursor and appended to the CSV one page at a time.
A JSON state file beside the CSV (``reviews.csv.state.json``) records, per app, the cursor of the
next page and whether Steam has run out; a re-run picks up from there, so an interrupted download
loses at most the page in flight. Reviews are de-duplicated by ``review_id``, also against rows
already in the CSV.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from .io import DataError, read_rows
from .steam import STEAM_COLUMNS
from .steam_http import SteamAPIError, SteamClient

__all__ = ["download", "fetch_page", "game_name", "review_row", "state_path", "main"]

REVIEW_TYPES = ("all", "positive", "negative")
FIRST_CURSOR = "*"  # Steam's cursor for the first page


def review_row(review: dict, app_id: int, game: str) -> dict[str, str]:
    """One CSV row from one entry of Steam's ``reviews`` list (``created`` in UTC, ``voted_up`` as 0/1)."""
    if "recommendationid" not in review:
        raise SteamAPIError(f"app {app_id}: a review without 'recommendationid' (keys: {sorted(review)[:8]})")
    stamp = review.get("timestamp_created")
    created = datetime.fromtimestamp(int(stamp), timezone.utc).strftime("%Y.%m.%d %H:%M") if stamp else ""
    return {
        "review_id": str(review["recommendationid"]), "app_id": str(app_id), "game": game, "created": created,
        "voted_up": "1" if review.get("voted_up") else "0", "review": (review.get("review") or "").strip(),
    }


def fetch_page(client: SteamClient, app_id: int, cursor: str, language: str, review_type: str) -> tuple[list[dict], str]:
    """One page (up to 100 reviews, newest first) and the cursor of the next page."""
    params = {"json": 1, "cursor": cursor, "num_per_page": 100, "language": language,
              "review_type": review_type, "purchase_type": "all", "filter": "recent"}
    data = client.get_json(f"appreviews/{app_id}", params)
    if data.get("success") != 1 or not isinstance(data.get("reviews", []), list):
        raise SteamAPIError(f"app {app_id}: Steam answered success={data.get('success')!r} for cursor {cursor!r}")
    return data.get("reviews", []), str(data.get("cursor") or "")


def game_name(client: SteamClient, app_id: int) -> str:
    """The store name of ``app_id`` from ``api/appdetails``, or ``app <id>`` when the lookup fails."""
    try:
        entry = client.get_json("api/appdetails", {"appids": app_id}).get(str(app_id)) or {}
        name = entry.get("data", {}).get("name") if entry.get("success") else None
    except (SteamAPIError, AttributeError):
        name = None
    return name.strip() if isinstance(name, str) and name.strip() else f"app {app_id}"


def state_path(out: Path) -> Path:
    """Where the resume state of the CSV ``out`` lives."""
    return out.with_name(out.name + ".state.json")


def _load_state(path: Path, query: dict[str, str], csv_exists: bool) -> dict:
    if not path.is_file() or not csv_exists:  # a state without its CSV describes rows that are gone
        return {"query": query, "apps": {}}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        apps, old = state["apps"], state["query"]
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: unreadable resume state ({type(e).__name__}: {e}); delete it to start over") from None
    if old != query or not isinstance(apps, dict):
        raise DataError(f"{path}: was written for {old}, not {query}; use another --out or delete the state file")
    return state


def _save_state(path: Path, state: dict) -> None:
    # Write then rename: a crash leaves the old state or the new one, never half of one.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _open_csv(out: Path, state: dict, log: Callable[[str], None]) -> tuple[TextIO, csv.DictWriter, set[str]]:
    """Open ``out`` for appending (header written if new) and collect the review ids it already holds."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.is_file() or out.stat().st_size == 0:
        f = open(out, "w", newline="", encoding="utf-8")
        writer = csv.DictWriter(f, fieldnames=STEAM_COLUMNS, lineterminator="\n")
        writer.writeheader()
        return f, writer, set()
    size, committed = out.stat().st_size, state.get("csv_bytes")
    if committed is not None and size < committed:
        raise DataError(f"{out}: {size} bytes, but {state_path(out)} recorded {committed}; was it edited? delete the state file")
    if committed is not None and size > committed:
        # Bytes after the last checkpoint are a page cut off mid-write; its cursor was not saved, so it is re-fetched.
        log(f"{out}: dropping {size - committed} byte(s) written after the last checkpoint")
        with open(out, "r+b") as raw:
            raw.truncate(committed)
    rows = read_rows(out, STEAM_COLUMNS)
    with open(out, newline="", encoding="utf-8") as f:
        header = [h.strip().lstrip("\ufeff") for h in next(csv.reader(f))]
    with open(out, "rb") as raw:
        raw.seek(-1, os.SEEK_END)
        ends_with_newline = raw.read(1) in (b"\n", b"\r")
    f = open(out, "a", newline="", encoding="utf-8")
    if not ends_with_newline:
        f.write("\n")
    # Append in the file's own column order, so a CSV written by another tool stays consistent.
    return f, csv.DictWriter(f, fieldnames=header, restval="", lineterminator="\n"), {r["review_id"] for r in rows}


def download(
    app_ids: list[int],
    out: str | Path,
    client: SteamClient | None = None,
    names: dict[int, str] | None = None,
    language: str = "english",
    review_type: str = "all",
    max_reviews: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[int, int]:
    """Fetch the reviews of each app into ``out``, resuming from its state file.

    Args:
        app_ids: Steam app ids, fetched one after the other.
        out: the CSV to create or append to (columns as in ``STEAM_COLUMNS``).
        client: the HTTP client (base URL, retries, sleep); None uses Steam with default retries.
        names: game name per app id; apps not in it are looked up in ``api/appdetails``.
        language: Steam's review language (``english``, ``all``, ...).
        review_type: ``all``, ``positive`` or ``negative``.
        max_reviews: stop an app once this many of its reviews were written (over all runs); None: all.
        log: where progress lines go.

    Returns:
        The number of new rows written per app in this run.

    Raises:
        SteamAPIError: Steam failed for good; what was written so far is kept and a re-run resumes.
        DataError: the CSV or its state file cannot be resumed.
    """
    if review_type not in REVIEW_TYPES:
        raise ValueError(f"review_type={review_type!r} must be one of {REVIEW_TYPES}")
    if max_reviews is not None and max_reviews < 1:
        raise ValueError(f"max_reviews={max_reviews} must be >= 1 or None")
    out, client, names = Path(out).expanduser(), client or SteamClient(), names or {}
    spath = state_path(out)
    has_rows = out.is_file() and out.stat().st_size > 0
    state = _load_state(spath, {"language": language, "review_type": review_type}, has_rows)
    f, writer, seen = _open_csv(out, state, log)
    new: dict[int, int] = {}
    try:
        for app in app_ids:
            app_state = state["apps"].setdefault(str(app), {"cursor": FIRST_CURSOR, "done": False, "written": 0})
            new[app] = 0
            if app_state["done"] or (max_reviews is not None and app_state["written"] >= max_reviews):
                log(f"app {app}: already complete ({app_state['written']} rows), skipped")
                continue
            app_state["game"] = game = names.get(app) or app_state.get("game") or game_name(client, app)
            cursor, cursors_seen = app_state["cursor"], {app_state["cursor"]}
            while True:
                reviews, next_cursor = fetch_page(client, app, cursor, language, review_type)
                rows, dupes, capped = [], 0, False
                for review in reviews:
                    if max_reviews is not None and app_state["written"] + len(rows) >= max_reviews:
                        capped = True
                        break
                    row = review_row(review, app, game)
                    if row["review_id"] in seen:
                        dupes += 1
                        continue
                    seen.add(row["review_id"])
                    rows.append(row)
                writer.writerows(rows)
                f.flush()
                os.fsync(f.fileno())
                # Steam signals the end with an empty page or by handing back a cursor already used.
                exhausted = not reviews or not next_cursor or next_cursor in cursors_seen
                app_state["written"] += len(rows)
                app_state["done"] = exhausted and not capped
                if not (exhausted or capped):
                    # A capped page keeps its cursor: a later run with a larger cap re-reads it, de-duplicated.
                    app_state["cursor"] = next_cursor
                state["csv_bytes"] = os.fstat(f.fileno()).st_size
                _save_state(spath, state)
                new[app] += len(rows)
                log(f"app {app} ({game}): +{len(rows)} rows, {dupes} duplicate(s) skipped, {app_state['written']} in all")
                if exhausted or capped or (max_reviews is not None and app_state["written"] >= max_reviews):
                    break
                cursor = next_cursor
                cursors_seen.add(cursor)
    finally:
        f.close()
    return new


def _name_pair(text: str) -> tuple[int, str]:
    app, sep, name = text.partition("=")
    if not sep or not app.strip().isdigit() or not name.strip():
        raise argparse.ArgumentTypeError(f"expected APP_ID=NAME, got {text!r}")
    return int(app), name.strip()


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status (1 with a one-line error on failure)."""
    p = argparse.ArgumentParser(prog="python -m datamodules.steam_download", description="Download Steam user reviews into a CSV for SteamReviewsDataModule; re-runs resume.")
    p.add_argument("--app-ids", type=int, nargs="+", required=True, help="Steam app ids, e.g. 322170")
    p.add_argument("--out", required=True, help="CSV to write or resume; its state goes to OUT.state.json")
    p.add_argument("--name", type=_name_pair, action="append", default=[], metavar="APP_ID=NAME",
                   help="game name for an app (repeatable); others are looked up in the store")
    p.add_argument("--language", default="english", help="review language, or 'all'")
    p.add_argument("--review-type", default="all", choices=REVIEW_TYPES)
    p.add_argument("--max-reviews", type=int, default=None, help="cap per app, over all runs")
    p.add_argument("--base-url", default="https://store.steampowered.com", help="the only origin contacted")
    p.add_argument("--max-retries", type=int, default=5, help="retries on HTTP 429/5xx and network errors")
    p.add_argument("--backoff", type=float, default=2.0, help="seconds before the first retry, doubling after")
    a = p.parse_args(argv)
    try:
        client = SteamClient(a.base_url, max_retries=a.max_retries, backoff=a.backoff)
        new = download(a.app_ids, a.out, client, dict(a.name), a.language, a.review_type, a.max_reviews)
    except (SteamAPIError, DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{a.out}: {sum(new.values())} new review(s) from {len(new)} app(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
