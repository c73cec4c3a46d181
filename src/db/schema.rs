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
    calendar_follows (person, calendar_id) {
        person -> Text,
        calendar_id -> BigInt,
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

diesel::joinable!(events -> calendars (calendar_id));
diesel::joinable!(event_overrides -> events (event_id));

diesel::joinable!(calendar_follows -> calendars (calendar_id));

diesel::allow_tables_to_appear_in_same_query!(
    calendars,
    events,
    event_overrides,
    api_tokens,
    jobs,
    people,
    push_subscriptions,
    calendar_follows,
    reminders,
);
