-- RSVPs across servers. Instants are naive UTC TIMESTAMP values on both backends.

-- Answers of remote people to our events' occurrences: a Join (or an Accept of the Event)
-- asks for a seat through the booking function, a TentativeAccept is kept without a seat, and
-- a Leave (or an Undo of the Join, or a Reject of the Event) gives the seat up. One row per
-- person and occurrence; a person who joins again reuses it.
CREATE TABLE incoming_rsvps (
    id BIGSERIAL PRIMARY KEY,
    event_id BIGINT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    recurrence_id TIMESTAMP NOT NULL,
    actor_id TEXT NOT NULL,
    -- The attendee id the booking carries: 'ap:' followed by the person's name and server.
    attendee TEXT NOT NULL,
    inbox TEXT NOT NULL,
    -- Our calendar actor, which answers.
    calendar_actor TEXT NOT NULL,
    -- The activity the last answer refers to (the Join, or the Accept of the Event).
    activity_id TEXT NOT NULL,
    activity_json TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('booked', 'waitlisted', 'tentative', 'refused', 'left')),
    booking_id BIGINT,
    reason TEXT,
    answers INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (event_id, recurrence_id, actor_id)
);

CREATE INDEX incoming_rsvps_attendee ON incoming_rsvps (attendee, event_id);

-- RSVPs of our people to remote events' occurrences, tracked until the organizer answers.
-- occurrence_start is the occurrence's start when the person joined; it names the occurrence
-- even after the organizer moves it.
CREATE TABLE outgoing_rsvps (
    id BIGSERIAL PRIMARY KEY,
    person TEXT NOT NULL,
    remote_event_id BIGINT NOT NULL REFERENCES remote_events (id) ON DELETE CASCADE,
    occurrence_start TIMESTAMP NOT NULL,
    object_id TEXT NOT NULL,
    inbox TEXT NOT NULL,
    join_activity_id TEXT NOT NULL UNIQUE,
    version INTEGER NOT NULL,
    -- cancelled: the organizer cancelled or deleted the occurrence after the person joined.
    state TEXT NOT NULL CHECK (state IN ('requested', 'accepted', 'waitlisted', 'tentative', 'refused', 'left', 'cancelled')),
    reason TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (person, remote_event_id, occurrence_start)
);
