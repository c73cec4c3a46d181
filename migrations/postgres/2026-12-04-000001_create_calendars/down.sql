DROP TABLE api_tokens;
DROP TABLE event_overrides;
DROP TABLE events;
DROP TABLE calendars;
