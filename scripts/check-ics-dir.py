#!/usr/bin/env python3
"""Imports every NAME.ics of a folder into a running rose-events and compares its agenda with
NAME.expected.json (the format of tests/data/ics). Also reads the calendar's own .ics feed back
with Python's icalendar and checks that it expands to the same occurrences, and fetches one
occurrence as an ActivityPub Event.

    scripts/check-ics-dir.py DIR --server http://127.0.0.1:8080 --token TOKEN

Standard library only, except the feed check, which needs icalendar and recurring-ical-events
(scripts/test.sh installs both into .venv; run this with .venv/bin/python to get them).
"""

import argparse
import datetime as dt
import json
import pathlib
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

WINDOW_DAYS = 380  # under the server's agenda window limit


def request(url, token=None, data=None, accept="application/json"):
    headers = {"Accept": accept}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=60) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def parse_instant(text):
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def agenda(server, slug, start, end):
    """Occurrences of calendar `slug` with start in [start, end), fetched in chunks."""
    found = []
    cursor = start
    while cursor < end:
        upper = min(end, cursor + dt.timedelta(days=WINDOW_DAYS))
        query = urllib.parse.urlencode(
            {
                "from": cursor.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "to": upper.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "calendar": slug,
                "zone": "UTC",
            }
        )
        status, body = request(f"{server}/api/v1/agenda?{query}")
        if status != 200:
            raise RuntimeError(f"agenda {query}: {status} {body[:300]!r}")
        page = json.loads(body)
        if page.get("truncated"):
            raise RuntimeError(f"agenda {query} was truncated")
        found.extend(page["occurrences"])
        cursor = upper
    return found


def compare(name, window, got):
    problems = []
    want = window["occurrences"]
    key = lambda o: (o["uid"], o["start"])  # noqa: E731
    got_by_key = {(o["uid"], o["start_utc"]): o for o in got}
    want_keys = {key(o) for o in want}
    for missing in sorted(want_keys - set(got_by_key)):
        problems.append(f"missing {missing}")
    for extra in sorted(set(got_by_key) - want_keys):
        problems.append(f"unexpected {extra}")
    for expected in want:
        actual = got_by_key.get(key(expected))
        if actual is None:
            continue
        checks = [
            ("end", expected["end"], actual["end_utc"]),
            ("all_day", expected["all_day"], actual["all_day"]),
            ("summary", expected["summary"], actual["title"]),
        ]
        if expected.get("recurrence_id") is not None:
            checks.append(("recurrence_id", expected["recurrence_id"], actual["recurrence_id"]))
        if expected.get("status") is not None:
            checks.append(("status", expected["status"].lower(), actual["status"]))
        if expected.get("location"):
            checks.append(("location", expected["location"], actual["location"]))
        for field, want_value, got_value in checks:
            if want_value != got_value:
                problems.append(f"{key(expected)} {field}: expected {want_value!r}, got {got_value!r}")
    if len(got) != window["count"]:
        problems.append(f"count: expected {window['count']}, got {len(got)}")
    return [f"{name} [{window['start']}, {window['end']}): {p}" for p in problems]


def feed_occurrences(feed, start, end):
    import icalendar
    import recurring_ical_events

    calendar = icalendar.Calendar.from_ical(feed)
    starts = set()
    for component in recurring_ical_events.of(calendar).between(start, end):
        value = component["DTSTART"].dt
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.timezone.utc)
            value = value.astimezone(dt.timezone.utc)
        else:
            value = dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
        if start <= value < end:  # the library also lists events that overlap the window
            starts.add((str(component["UID"]), value.strftime("%Y-%m-%dT%H:%M:%SZ")))
    return starts


def check_file(server, token, path):
    expected = json.loads(path.with_suffix("").with_suffix(".expected.json").read_text())
    slug = re.sub(r"[^a-z0-9-]", "-", path.stem.lower())[:60]
    status, body = request(
        f"{server}/api/v1/calendars/{slug}/import", token, data=path.read_bytes()
    )
    if expected["expect"] == "error":
        if status == 200:
            return [f"{path.name}: accepted a file that must be rejected"]
        detail = json.loads(body)
        print(f"  rejected as expected: {detail.get('detail')}")
        return []
    if status != 200:
        return [f"{path.name}: import failed {status} {body[:300]!r}"]
    print(f"  imported {json.loads(body)}")
    problems = []
    status, feed = request(f"{server}/calendars/{slug}.ics", accept="text/calendar")
    if status != 200:
        problems.append(f"{path.name}: feed {status}")
    for window in expected["windows"]:
        start, end = parse_instant(window["start"]), parse_instant(window["end"])
        got = agenda(server, slug, start, end)
        problems += compare(path.name, window, got)
        try:
            from_feed = feed_occurrences(feed, start, end)
        except ImportError:
            print("  (icalendar is not installed: feed not checked)")
        else:
            want = {(o["uid"], o["start"]) for o in window["occurrences"]}
            if from_feed != want:
                problems.append(
                    f"{path.name}: feed read by icalendar differs: "
                    f"missing {sorted(want - from_feed)[:5]} extra {sorted(from_feed - want)[:5]}"
                )
        if got:
            first = got[0]
            url = f"{server}/events/{first['event_id']}"
            if first["recurrence_id"] is not None:
                rid = parse_instant(first["recurrence_id"]).strftime("%Y%m%dT%H%M%SZ")
                url += f"/occurrences/{rid}"
            status, body = request(url, accept="application/activity+json")
            event = json.loads(body) if status == 200 else {}
            if event.get("type") != "Event" or event.get("name") != first["title"]:
                problems.append(f"{path.name}: ActivityPub view {status} {body[:200]!r}")
        print(f"  window {window['start']} .. {window['end']}: {len(got)} occurrences")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=pathlib.Path)
    parser.add_argument("--server", default="http://127.0.0.1:8080")
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    problems = []
    files = sorted(args.dir.glob("*.ics"))
    for path in files:
        print(path.name)
        problems += check_file(args.server.rstrip("/"), args.token, path)
    for problem in problems:
        print("FAIL", problem)
    print(f"{len(files)} files, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
