// Shared by both backends: only types common to SQLite and PostgreSQL (BigInt ids, naive UTC
// Timestamp, Text for JSON). Keep in step with migrations/{sqlite,postgres}.

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
    idempotency_keys (caller, key) {
        caller -> Text,
        key -> Text,
        fingerprint -> Text,
        status -> Integer,
        body -> Text,
        created_at -> Timestamp,
    }
}

diesel::joinable!(events -> calendars (calendar_id));
diesel::joinable!(event_overrides -> events (event_id));

diesel::joinable!(bookings -> occurrence_capacities (capacity_id));

diesel::allow_tables_to_appear_in_same_query!(
    calendars,
    events,
    event_overrides,
    api_tokens,
    attendees,
    booking_settings,
    occurrence_capacities,
    bookings,
    ledger_entries,
    busy_blocks,
    idempotency_keys,
);
