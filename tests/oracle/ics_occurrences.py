"""Print the occurrences of an .ics file in a window, as computed by Python's icalendar.

Usage: ics_occurrences.py FILE START END   (START and END as YYYY-MM-DDTHH:MM:SSZ)

Output: a JSON list sorted by start, each item {uid, start, end, all_day, status}. Starts and ends
are UTC instants in RFC 3339 with Z; all-day and floating values are pinned (read as if UTC), as
the Rust side does. An occurrence is listed when START <= start < END.
"""

import datetime
import json
import sys

import icalendar
import recurring_ical_events


def pinned_utc(value):
    """Return `value` (date, naive or aware datetime) as a UTC datetime."""
    if not isinstance(value, datetime.datetime):
        return datetime.datetime(value.year, value.month, value.day, tzinfo=datetime.timezone.utc)
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc)


def parse_instant(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc
    )


def main():
    path, start_text, end_text = sys.argv[1:4]
    window_start, window_end = parse_instant(start_text), parse_instant(end_text)
    with open(path, "rb") as handle:
        calendar = icalendar.Calendar.from_ical(handle.read())

    # Ask for a wider range because the library also returns events that only overlap it.
    query_start = window_start - datetime.timedelta(days=2)
    query_end = window_end + datetime.timedelta(days=2)
    found = []
    for event in recurring_ical_events.of(calendar).between(query_start, query_end):
        start_value = event["DTSTART"].dt
        start = pinned_utc(start_value)
        if not window_start <= start < window_end:
            continue
        end = pinned_utc(event["DTEND"].dt) if "DTEND" in event else None
        status = str(event.get("STATUS", "")).upper() or None
        found.append(
            {
                "uid": str(event.get("UID")),
                "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "end": end.strftime("%Y-%m-%dT%H:%M:%SZ") if end else None,
                "all_day": not isinstance(start_value, datetime.datetime),
                "status": status,
            }
        )
    found.sort(key=lambda item: (item["start"], item["uid"]))
    json.dump(found, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
