DROP TABLE reminders;
DROP TABLE calendar_follows;
DROP TABLE push_subscriptions;
DROP TABLE people;
DROP TABLE jobs;
