// Shared by both backends: only types common to SQLite and PostgreSQL (BigInt ids, naive UTC
// Timestamp, Text for JSON). Keep in step with migrations/{sqlite,postgres}.

diesel::table! {
    actor_keys (actor_key) {
        actor_key -> Text,
        public_key_pem -> Text,
        private_key_pem -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> BigInt,
        token_hash -> Text,
        label -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    attendees (id) {
        id -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    booking_settings (event_id) {
        event_id -> BigInt,
        buffer_before_seconds -> BigInt,
        buffer_after_seconds -> BigInt,
        opens_before_seconds -> Nullable<BigInt>,
        closes_before_seconds -> BigInt,
        waitlist -> Bool,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    bookings (id) {
        id -> BigInt,
        capacity_id -> BigInt,
        event_id -> BigInt,
        recurrence_id -> Timestamp,
        attendee -> Text,
        seats -> Integer,
        state -> Text,
        starts_at -> Timestamp,
        ends_at -> Timestamp,
        hold_expires_at -> Nullable<Timestamp>,
        order_ref -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    busy_blocks (id) {
        id -> BigInt,
        attendee -> Text,
        starts_at -> Timestamp,
        ends_at -> Timestamp,
        label -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    calendar_federation (calendar_id) {
        calendar_id -> BigInt,
        manually_approves_followers -> Bool,
    }
}

diesel::table! {
    calendar_follows (person, calendar_id) {
        person -> Text,
        calendar_id -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    calendars (id) {
        id -> BigInt,
        slug -> Text,
        name -> Text,
        default_zone -> Text,
        visibility -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    event_overrides (id) {
        id -> BigInt,
        event_id -> BigInt,
        recurrence_id -> Timestamp,
        start_wall -> Nullable<Timestamp>,
        time_basis -> Nullable<Text>,
        zone -> Nullable<Text>,
        length_days -> Nullable<BigInt>,
        length_seconds -> Nullable<BigInt>,
        details_json -> Nullable<Text>,
    }
}

diesel::table! {
    events (id) {
        id -> BigInt,
        calendar_id -> BigInt,
        uid -> Text,
        title -> Text,
        description -> Nullable<Text>,
        location -> Nullable<Text>,
        place_json -> Nullable<Text>,
        online_url -> Nullable<Text>,
        capacity -> Nullable<Integer>,
        status -> Text,
        start_wall -> Timestamp,
        time_basis -> Text,
        zone -> Nullable<Text>,
        length_days -> BigInt,
        length_seconds -> BigInt,
        rrule -> Nullable<Text>,
        rdates_json -> Text,
        exdates_json -> Text,
        span_start -> Timestamp,
        span_end -> Nullable<Timestamp>,
        sequence -> Integer,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    followers (id) {
        id -> BigInt,
        calendar_id -> Nullable<BigInt>,
        actor_id -> Text,
        inbox -> Text,
        follow_activity_id -> Text,
        follow_json -> Text,
        state -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    idempotency_keys (caller, key) {
        caller -> Text,
        key -> Text,
        fingerprint -> Text,
        status -> Integer,
        body -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    inbox_receipts (body_sha256) {
        body_sha256 -> Text,
        activity_id -> Text,
        actor_id -> Text,
        received_at -> Timestamp,
    }
}

diesel::table! {
    jobs (id) {
        id -> BigInt,
        kind -> Text,
        dedup_key -> Text,
        payload -> Text,
        state -> Text,
        run_at -> Timestamp,
        attempts -> Integer,
        max_attempts -> Integer,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
        deadline -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    ledger_entries (id) {
        id -> BigInt,
        booking_id -> BigInt,
        capacity_id -> BigInt,
        attendee -> Text,
        kind -> Text,
        seats -> Integer,
        idempotency_key -> Nullable<Text>,
        order_ref -> Nullable<Text>,
        hold_expires_at -> Nullable<Timestamp>,
        recorded_at -> Timestamp,
    }
}

diesel::table! {
    occurrence_capacities (id) {
        id -> BigInt,
        event_id -> BigInt,
        recurrence_id -> Timestamp,
        capacity_override -> Nullable<Integer>,
        capacity -> Nullable<Integer>,
        seats_taken -> Integer,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    outbox_activities (id) {
        id -> BigInt,
        activity_id -> Text,
        actor_id -> Text,
        kind -> Text,
        public -> Bool,
        activity_json -> Text,
        recipients_json -> Text,
        published_at -> Timestamp,
    }
}

diesel::table! {
    peers (id) {
        id -> BigInt,
        domain -> Text,
        state -> Text,
        actor_id -> Nullable<Text>,
        inbox -> Nullable<Text>,
        follow_activity_id -> Nullable<Text>,
        follow_state -> Nullable<Text>,
        reason -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    people (id) {
        id -> Text,
        email -> Nullable<Text>,
        channels -> Text,
        reminder_offsets -> Text,
        digest -> Text,
        digest_hour -> Integer,
        zone -> Text,
        unsubscribe_token -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    push_subscriptions (id) {
        id -> BigInt,
        person -> Text,
        endpoint -> Text,
        p256dh -> Text,
        auth -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    reminders (id) {
        id -> BigInt,
        event_id -> BigInt,
        occurrence_key -> Text,
        person -> Text,
        channel -> Text,
        offset_minutes -> Integer,
        job_id -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    incoming_rsvps (id) {
        id -> BigInt,
        event_id -> BigInt,
        recurrence_id -> Timestamp,
        actor_id -> Text,
        attendee -> Text,
        inbox -> Text,
        calendar_actor -> Text,
        activity_id -> Text,
        activity_json -> Text,
        state -> Text,
        booking_id -> Nullable<BigInt>,
        reason -> Nullable<Text>,
        answers -> Integer,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    outgoing_rsvps (id) {
        id -> BigInt,
        person -> Text,
        remote_event_id -> BigInt,
        occurrence_start -> Timestamp,
        object_id -> Text,
        inbox -> Text,
        join_activity_id -> Text,
        version -> Integer,
        state -> Text,
        reason -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    remote_actors (actor_id) {
        actor_id -> Text,
        key_id -> Text,
        public_key_pem -> Text,
        inbox -> Text,
        shared_inbox -> Nullable<Text>,
        fetched_at -> Timestamp,
    }
}

diesel::table! {
    remote_events (id) {
        id -> BigInt,
        object_id -> Text,
        origin -> Text,
        actor_id -> Text,
        title -> Text,
        url -> Nullable<Text>,
        zone -> Nullable<Text>,
        start_at -> Timestamp,
        end_at -> Nullable<Timestamp>,
        location -> Nullable<Text>,
        place_json -> Nullable<Text>,
        online_url -> Nullable<Text>,
        capacity -> Nullable<Integer>,
        remaining_capacity -> Nullable<Integer>,
        status -> Text,
        rrule -> Nullable<Text>,
        object_updated -> Timestamp,
        deleted -> Bool,
        object_json -> Text,
        received_at -> Timestamp,
        series_object_id -> Nullable<Text>,
        recurrence_id -> Nullable<Timestamp>,
    }
}

diesel::table! {
    remote_occurrences (id) {
        id -> BigInt,
        remote_event_id -> BigInt,
        start_at -> Timestamp,
        end_at -> Timestamp,
        recurrence_id -> Nullable<Timestamp>,
        object_id -> Nullable<Text>,
        status -> Nullable<Text>,
        remaining_capacity -> Nullable<Integer>,
        object_updated -> Nullable<Timestamp>,
        deleted -> Bool,
    }
}

diesel::joinable!(events -> calendars (calendar_id));
diesel::joinable!(event_overrides -> events (event_id));
diesel::joinable!(followers -> calendars (calendar_id));
diesel::joinable!(calendar_federation -> calendars (calendar_id));
diesel::joinable!(remote_occurrences -> remote_events (remote_event_id));
diesel::joinable!(outgoing_rsvps -> remote_events (remote_event_id));
diesel::joinable!(bookings -> occurrence_capacities (capacity_id));
diesel::joinable!(calendar_follows -> calendars (calendar_id));

diesel::allow_tables_to_appear_in_same_query!(
    actor_keys,
    api_tokens,
    attendees,
    booking_settings,
    bookings,
    busy_blocks,
    calendar_federation,
    calendar_follows,
    calendars,
    event_overrides,
    events,
    followers,
    idempotency_keys,
    inbox_receipts,
    incoming_rsvps,
    jobs,
    ledger_entries,
    occurrence_capacities,
    outbox_activities,
    outgoing_rsvps,
    peers,
    people,
    push_subscriptions,
    reminders,
    remote_actors,
    remote_events,
    remote_occurrences,
    published_occurrences,
);

diesel::table! {
    published_occurrences (id) {
        id -> BigInt,
        event_id -> BigInt,
        recurrence_id -> Nullable<Timestamp>,
        object_id -> Text,
        version -> Integer,
        fingerprint -> Text,
        ends_at -> Timestamp,
        deleted -> Bool,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    delivery_domains (domain) {
        domain -> Text,
        state -> Text,
        consecutive_failures -> Integer,
        first_failure_at -> Nullable<Timestamp>,
        last_failure_at -> Nullable<Timestamp>,
        next_attempt_at -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        last_success_at -> Nullable<Timestamp>,
        updated_at -> Timestamp,
    }
}
