DROP TABLE outgoing_rsvps;
DROP TABLE incoming_rsvps;
