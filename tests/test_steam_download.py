"""The Steam review downloader against a fake Steam on 127.0.0.1: paging, backoff, resume, de-duplication."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from datamodules.io import DataError, read_rows
from datamodules.steam import STEAM_COLUMNS, SteamReviewsDataModule
from datamodules.steam_download import download, game_name, main, state_path
from datamodules.steam_http import SteamAPIError, SteamClient, retry_after_seconds
from tests.conftest import NEGATIVE, POSITIVE, write_steam

T0 = 1756438140  # 2025-08-29 03:29:00 UTC


def rev(i: int, up: bool = True, text: str | None = None) -> dict:
    """A review as Steam's JSON has it (with some of the fields the downloader ignores)."""
    return {"recommendationid": str(i), "author": {"steamid": "7656"}, "language": "english",
            "review": text if text is not None else f"review number {i}", "timestamp_created": T0 + 60 * i,
            "voted_up": up, "votes_up": 0, "weighted_vote_score": "0.5"}


class FakeSteam:
    """Answers ``/appreviews/<id>`` from chains of pages and ``/api/appdetails`` from ``names``; logs requests."""

    def __init__(self) -> None:
        self.pages: dict[int, dict[str, tuple[list[dict], str]]] = {}
        self.names: dict[int, str] = {}
        self.failures: list[tuple[int, dict[str, str]]] = []  # served, in order, before any normal answer
        self.broken_after: int | None = None  # review pages served before answering 500 for good
        self.served = 0
        self.requests: list[tuple[str, dict[str, str]]] = []

    def chain(self, app: int, pages: list[list[dict]], end: str = "empty") -> list[str]:
        """Link pages by cursor. ``end``: ``empty`` adds a last page with no reviews, ``repeat`` has the
        last page hand back its own cursor. Cursors hold ``+``, ``/`` and ``=``, which survive only if encoded."""
        cursors = ["*"] + [f"AoJ+{app}/{i}==" for i in range(1, len(pages) + 1)]
        self.pages[app] = {cursors[i]: (reviews, cursors[i + 1]) for i, reviews in enumerate(pages)}
        if end == "empty":
            self.pages[app][cursors[-1]] = ([], cursors[-1])
        else:
            self.pages[app][cursors[-2]] = (pages[-1], cursors[-2])
        return cursors

    def review_cursors(self, app: int) -> list[str]:
        return [q["cursor"] for p, q in self.requests if p == f"/appreviews/{app}"]

    def answer(self, path: str, q: dict[str, str]) -> tuple[int, dict, dict[str, str]]:
        if self.failures:
            status, headers = self.failures.pop(0)
            return status, {"error": status}, headers
        if path == "/api/appdetails":
            app = q["appids"]
            if int(app) in self.names:
                return 200, {app: {"success": True, "data": {"type": "game", "name": self.names[int(app)]}}}, {}
            return 200, {app: {"success": False}}, {}
        m = re.fullmatch(r"/appreviews/(\d+)", path)
        if not m:
            return 404, {}, {}
        if self.broken_after is not None and self.served >= self.broken_after:
            return 500, {}, {}
        page = self.pages.get(int(m[1]), {}).get(q.get("cursor", ""))
        if page is None:
            return 400, {"error": "unknown cursor"}, {}
        self.served += 1
        return 200, {"success": 1, "query_summary": {"num_reviews": len(page[0])}, "reviews": page[0], "cursor": page[1]}, {}


@pytest.fixture
def steam():
    fake = FakeSteam()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            fake.requests.append((url.path, q))
            status, body, headers = fake.answer(url.path, q)
            data = json.dumps(body).encode()
            self.send_response(status)
            for k, v in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(5)


def client(fake: FakeSteam, sleeps: list | None = None, **kw) -> SteamClient:
    return SteamClient(fake.url, max_retries=kw.pop("max_retries", 3), backoff=1.0, timeout=5,
                       sleep=(sleeps if sleeps is not None else []).append, **kw)


def csv_ids(path: Path) -> list[str]:
    return [r["review_id"] for r in read_rows(path, STEAM_COLUMNS)]


def test_pages_are_followed_until_an_empty_page(steam, tmp_path):
    cursors = steam.chain(10, [[rev(1), rev(2, up=False), rev(3)], [rev(4), rev(5)], [rev(6)]])
    out = tmp_path / "reviews.csv"
    assert download([10], out, client(steam), names={10: "Alpha"}, log=lambda s: None) == {10: 6}
    assert steam.review_cursors(10) == cursors  # the last cursor returned an empty page
    assert steam.requests[0][1] == {"json": "1", "cursor": "*", "num_per_page": "100", "language": "english",
                                    "review_type": "all", "purchase_type": "all", "filter": "recent"}
    assert out.read_text().splitlines()[0] == ",".join(STEAM_COLUMNS)
    rows = read_rows(out, STEAM_COLUMNS)
    assert [r["review_id"] for r in rows] == ["1", "2", "3", "4", "5", "6"]
    assert rows[0] | {"_row": ""} == {"review_id": "1", "app_id": "10", "game": "Alpha", "created": "2025.08.29 03:30",
                                      "voted_up": "1", "review": "review number 1", "_row": ""}
    assert [r["voted_up"] for r in rows[:2]] == ["1", "0"]
    assert json.loads(state_path(out).read_text())["apps"]["10"]["done"] is True


def test_paging_stops_when_steam_repeats_the_cursor(steam, tmp_path):
    cursors = steam.chain(10, [[rev(1)], [rev(2)]], end="repeat")
    out = tmp_path / "r.csv"
    assert download([10], out, client(steam), names={10: "A"}, review_type="negative", log=lambda s: None) == {10: 2}
    assert steam.review_cursors(10) == cursors[:2]
    assert {q["review_type"] for _, q in steam.requests} == {"negative"}


def test_429_and_503_are_retried_with_backoff(steam, tmp_path):
    steam.chain(10, [[rev(1)], [rev(2)]])
    steam.failures = [(429, {"Retry-After": "7"}), (503, {}), (429, {"Retry-After": "3600"})]
    sleeps: list[float] = []
    assert download([10], tmp_path / "r.csv", client(steam, sleeps, max_delay=30), names={10: "A"}, log=lambda s: None) == {10: 2}
    assert sleeps == [7.0, 2.0, 30.0]  # Retry-After, then backoff * 2**1, then Retry-After capped at max_delay
    assert csv_ids(tmp_path / "r.csv") == ["1", "2"]


def test_retry_after_as_an_http_date():
    assert retry_after_seconds("Fri, 29 Aug 2025 03:29:10 GMT", now=lambda: T0) == 10.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_retries_are_bounded_and_end_in_one_line(steam, tmp_path, capsys):
    steam.chain(10, [[rev(1)]])
    steam.failures = [(503, {})] * 20
    sleeps: list[float] = []
    with pytest.raises(SteamAPIError, match=r"giving up after 4 attempt\(s\); last error: HTTP 503") as e:
        download([10], tmp_path / "r.csv", client(steam, sleeps), names={10: "A"}, log=lambda s: None)
    assert "\n" not in str(e.value) and sleeps == [1.0, 2.0, 4.0] and len(steam.requests) == 4
    assert main(["--app-ids", "10", "--out", str(tmp_path / "r.csv"), "--base-url", steam.url, "--name", "10=A",
                 "--max-retries", "1", "--backoff", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "HTTP 503" in err and err.count("\n") == 1


def test_client_errors_fail_at_once(steam):
    steam.failures = [(404, {})]
    sleeps: list[float] = []
    with pytest.raises(SteamAPIError, match="HTTP 404"):
        client(steam, sleeps).get_json("appreviews/10", {"cursor": "*"})
    assert sleeps == []


def test_a_redirect_to_another_host_is_refused(steam):
    # The redirect is refused before any connection: example.invalid is never contacted.
    steam.failures = [(302, {"Location": "http://example.invalid/steal"})]
    with pytest.raises(SteamAPIError, match="refusing"):
        client(steam).get_json("api/appdetails", {"appids": 10})


def test_an_interrupted_run_resumes_without_refetching_or_duplicates(steam, tmp_path):
    steam.chain(10, [[rev(1), rev(2)]])
    c20 = steam.chain(20, [[rev(21), rev(22)], [rev(23)], [rev(24), rev(25)], [rev(26)]])
    steam.names = {10: "Alpha", 20: "Beta"}
    steam.broken_after = 4  # app 10's page and end page, then two pages of app 20
    out, lines = tmp_path / "r.csv", []
    with pytest.raises(SteamAPIError, match="HTTP 500"):
        download([10, 20], out, client(steam, max_retries=2), log=lines.append)
    assert csv_ids(out) == ["1", "2", "21", "22", "23"]
    steam.broken_after, steam.requests = None, []
    assert download([10, 20], out, client(steam), log=lines.append) == {10: 0, 20: 3}
    assert steam.review_cursors(10) == [] and steam.review_cursors(20) == c20[2:]
    assert [p for p, _ in steam.requests if p == "/api/appdetails"] == []  # names were kept in the state
    rows = read_rows(out, STEAM_COLUMNS)
    assert [r["review_id"] for r in rows] == ["1", "2", "21", "22", "23", "24", "25", "26"]
    assert {r["game"] for r in rows} == {"Alpha", "Beta"}
    steam.requests = []
    assert download([10, 20], out, client(steam), log=lines.append) == {10: 0, 20: 0}
    assert steam.requests == []


def test_a_page_cut_off_mid_write_is_dropped_and_fetched_again(steam, tmp_path):
    steam.chain(10, [[rev(1)], [rev(2)], [rev(3)]])
    steam.broken_after = 1
    out, lines = tmp_path / "r.csv", []
    with pytest.raises(SteamAPIError):
        download([10], out, client(steam, max_retries=0), names={10: "A"}, log=lines.append)
    with open(out, "a") as f:  # what a crash in the middle of writing page 2 leaves behind
        f.write('2,10,A,2025.08.29 03:31,1,"review num')
    steam.broken_after = None
    assert download([10], out, client(steam), names={10: "A"}, log=lines.append) == {10: 2}
    assert csv_ids(out) == ["1", "2", "3"] and any("dropping" in line for line in lines)
    state = json.loads(state_path(out).read_text())
    state["csv_bytes"] += 10
    state_path(out).write_text(json.dumps(state))
    with pytest.raises(DataError, match="was it edited"):
        download([10], out, client(steam), log=lines.append)


def test_changing_the_query_of_a_resumed_file_is_an_error(steam, tmp_path):
    steam.chain(10, [[rev(1)]])
    download([10], tmp_path / "r.csv", client(steam), names={10: "A"}, log=lambda s: None)
    with pytest.raises(DataError, match="delete the state file"):
        download([10], tmp_path / "r.csv", client(steam), names={10: "A"}, review_type="positive", log=lambda s: None)


def test_duplicates_are_skipped_in_pages_and_against_the_csv(steam, tmp_path):
    out = write_steam(tmp_path / "r.csv", [{"review_id": "5", "app_id": "10", "game": "Old", "created": "x",
                                            "voted_up": "1", "review": "kept from before"}])
    steam.chain(10, [[rev(1), rev(2), rev(3)], [rev(3), rev(4), rev(5)], [rev(1)]])
    assert download([10], out, client(steam), names={10: "A"}, log=lambda s: None) == {10: 4}
    rows = read_rows(out, STEAM_COLUMNS)
    assert [r["review_id"] for r in rows] == ["5", "1", "2", "3", "4"]
    assert rows[0]["review"] == "kept from before"


def test_max_reviews_caps_each_app_and_a_larger_cap_continues(steam, tmp_path):
    steam.chain(10, [[rev(1), rev(2), rev(3)], [rev(4), rev(5), rev(6)], [rev(7), rev(8), rev(9)]])
    out, quiet = tmp_path / "r.csv", (lambda s: None)
    assert download([10], out, client(steam), names={10: "A"}, max_reviews=4, log=quiet) == {10: 4}
    assert download([10], out, client(steam), names={10: "A"}, max_reviews=4, log=quiet) == {10: 0}
    assert download([10], out, client(steam), names={10: "A"}, max_reviews=7, log=quiet) == {10: 3}
    assert download([10], out, client(steam), names={10: "A"}, log=quiet) == {10: 2}
    assert csv_ids(out) == [str(i) for i in range(1, 10)]


def test_game_names_from_the_store_with_fallback(steam, tmp_path):
    steam.names = {10: "Alpha, the Game"}
    assert game_name(client(steam), 10) == "Alpha, the Game"
    assert game_name(client(steam), 20) == "app 20"  # success: false
    steam.failures = [(500, {})] * 2
    assert game_name(client(steam, max_retries=1), 10) == "app 10"  # store down
    steam.chain(10, [[rev(1)]])
    steam.chain(20, [[rev(2)]])
    download([10, 20], tmp_path / "r.csv", client(steam), log=lambda s: None)
    assert [r["game"] for r in read_rows(tmp_path / "r.csv", STEAM_COLUMNS)] == ["Alpha, the Game", "app 20"]
    steam.requests = []
    assert main(["--app-ids", "10", "--out", str(tmp_path / "m.csv"), "--base-url", steam.url, "--name", "10=My, Name"]) == 0
    assert [p for p, _ in steam.requests] == ["/appreviews/10"] * 2  # the given name needs no lookup
    assert read_rows(tmp_path / "m.csv", STEAM_COLUMNS)[0]["game"] == "My, Name"


def test_the_csv_round_trips_through_the_datamodule(steam, tmp_path, tiny_bert):
    texts = [f'{POSITIVE[i]}\nline two, with "quotes", commas\r\n\n  10/10 ✓' for i in range(5)]
    texts += [f'{NEGATIVE[i]},\n"{i}" ""doubled"" quotes, and a trailing comma,' for i in range(5)]
    reviews = [rev(100 + i, up=i < 5, text=t) for i, t in enumerate(texts)]
    steam.chain(10, [reviews[:4], reviews[4:8], reviews[8:]])
    out = tmp_path / "r.csv"
    download([10], out, client(steam), names={10: 'Beta, "the" Sequel'}, log=lambda s: None)
    dm = SteamReviewsDataModule(csv_path=str(out), tokenizer_name=str(tiny_bert), val_fraction=0.2, test_fraction=0.2)
    kept, dropped = dm.read_reviews()
    assert dropped == {}
    assert {r["id"]: (r["text"], r["label"]) for r in kept} == {str(100 + i): (t.strip(), int(i < 5)) for i, t in enumerate(texts)}
    dm.setup("fit")
    assert sum(len(dm.splits[s]) for s in ("train", "val", "test")) == 10
    assert next(iter(dm.train_dataloader()))["input_ids"].ndim == 2
