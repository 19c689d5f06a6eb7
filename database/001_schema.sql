-- Demo warehouse: asset finance (equipment loans/leases with telematics), 24 tables.
--
-- Plain SQL a DBA can read and run by hand. `provision seed` runs this file, then 002_views.sql,
-- loads seeds/*, then runs derived.sql, all in ONE transaction. Objects are created in the current
-- schema (normally `public`); `provision_meta` records that this tool owns them.
--
-- Groups:
--   master data     oems, asset_models, customers, accounts, assets, entity_identifiers
--   transactions    repayment_schedule, payments, delinquency_history (derived), collection_actions
--   raw data        raw_telemetry
--   metric system   metric_definitions, metric_values, metric_aggregates (derived)
--   indicators      indicator_definitions, indicator_values
--   events          event_definitions, events
--   snapshots       asset_current_state, account_current_state, customer_current_state (derived)
--   places          pois, poi_visits, poi_visit_patterns (derived)
--
-- Derived tables are computed by derived.sql from the transactions, so snapshots always agree
-- with payments, schedules and telemetry.

CREATE TABLE provision_meta (
    singleton           boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    tool                text NOT NULL CHECK (tool = 'metabase-provisioner'),
    tool_version        text NOT NULL,
    as_of               date NOT NULL,
    -- copies of the curated demo (`provision seed --scale N`): 15 × scale accounts
    scale               integer NOT NULL DEFAULT 1 CHECK (scale >= 1),
    input_fingerprint   text NOT NULL,
    checksum            text NOT NULL,
    counts              jsonb NOT NULL,
    seeded_at           timestamptz NOT NULL
);
COMMENT ON TABLE provision_meta IS
    'Ownership marker of metabase-provisioner: one row (tool version, as-of date, scale, data checksum, seeded_at). The tool only rebuilds objects it owns.';

-- ── master data ─────────────────────────────────────────────────────────────────────────────

CREATE TABLE oems (
    id          integer PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    country     text NOT NULL,
    website     text
);
COMMENT ON TABLE oems IS 'Equipment manufacturers (original equipment manufacturers) whose machines are financed.';

CREATE TABLE asset_models (
    id          integer PRIMARY KEY,
    oem_id      integer NOT NULL REFERENCES oems (id),
    name        text NOT NULL,
    category    text NOT NULL
                CHECK (category IN ('excavator', 'tractor', 'loader', 'truck', 'harvester', 'crane', 'generator')),
    list_price  numeric(12, 2) NOT NULL CHECK (list_price > 0),
    UNIQUE (oem_id, name)
);
CREATE INDEX asset_models_oem_id_idx ON asset_models (oem_id);
COMMENT ON TABLE asset_models IS 'Machine models per OEM, with category and list price.';

CREATE TABLE customers (
    id              integer PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    segment         text NOT NULL
                    CHECK (segment IN ('construction', 'agriculture', 'logistics', 'mining', 'utilities')),
    region          text NOT NULL,
    contact_name    text NOT NULL,
    contact_phone   text NOT NULL,
    contact_email   text NOT NULL CHECK (contact_email LIKE '%@%'),
    onboarded_on    date NOT NULL
);
COMMENT ON TABLE customers IS 'Borrowers: the businesses that finance equipment.';

CREATE TABLE accounts (
    id                  integer PRIMARY KEY,
    account_number      text NOT NULL UNIQUE,
    customer_id         integer NOT NULL REFERENCES customers (id),
    product             text NOT NULL CHECK (product IN ('hire_purchase', 'finance_lease', 'operating_lease')),
    financed_amount     numeric(12, 2) NOT NULL CHECK (financed_amount > 0),
    instalment_amount   numeric(12, 2) NOT NULL CHECK (instalment_amount > 0),
    term_months         integer NOT NULL CHECK (term_months BETWEEN 1 AND 120),
    interest_rate_pct   numeric(5, 2) NOT NULL CHECK (interest_rate_pct >= 0),
    opened_on           date NOT NULL,
    first_due_on        date NOT NULL,
    status              text NOT NULL CHECK (status IN ('active', 'closed', 'written_off')),
    CHECK (first_due_on > opened_on)
);
CREATE INDEX accounts_customer_id_idx ON accounts (customer_id);
COMMENT ON TABLE accounts IS 'Finance agreements: one account finances one asset; instalments are due every 30 days.';

CREATE TABLE assets (
    id                      integer PRIMARY KEY,
    account_id              integer NOT NULL UNIQUE REFERENCES accounts (id),
    asset_model_id          integer NOT NULL REFERENCES asset_models (id),
    serial_number           text NOT NULL UNIQUE,
    manufactured_year       integer NOT NULL CHECK (manufactured_year BETWEEN 1990 AND 2100),
    -- distinct among the curated 15; each `--scale` copy of an asset repeats its pattern
    telemetry_pattern       text NOT NULL,
    telemetry_description   text NOT NULL,
    -- target of the composite key events (asset_id, account_id) → an event's asset and account agree
    UNIQUE (id, account_id)
);
CREATE INDEX assets_asset_model_id_idx ON assets (asset_model_id);
COMMENT ON TABLE assets IS 'Financed machines fitted with telematics; each of the 15 telemetry patterns shows on one asset per 15 accounts.';

CREATE TABLE entity_identifiers (
    id                  integer PRIMARY KEY,
    entity_type         text NOT NULL CHECK (entity_type IN ('oem', 'customer', 'account', 'asset')),
    entity_id           integer NOT NULL,
    identifier_type     text NOT NULL,
    identifier_value    text NOT NULL,
    source_system       text NOT NULL,
    UNIQUE (identifier_type, identifier_value)
);
CREATE INDEX entity_identifiers_entity_idx ON entity_identifiers (entity_type, entity_id);
COMMENT ON TABLE entity_identifiers IS
    'External identifiers (VIN, telematics device, CRM and ledger ids) mapped to our entities.';

-- ── transactions ────────────────────────────────────────────────────────────────────────────

CREATE TABLE repayment_schedule (
    id                  integer PRIMARY KEY,
    account_id          integer NOT NULL REFERENCES accounts (id),
    instalment_number   integer NOT NULL CHECK (instalment_number > 0),
    due_on              date NOT NULL,
    amount_due          numeric(12, 2) NOT NULL CHECK (amount_due > 0),
    UNIQUE (account_id, instalment_number)
);
CREATE INDEX repayment_schedule_due_on_idx ON repayment_schedule (account_id, due_on);
COMMENT ON TABLE repayment_schedule IS 'Every instalment of every account over its full term.';

CREATE TABLE payments (
    id                  integer PRIMARY KEY,
    account_id          integer NOT NULL REFERENCES accounts (id),
    instalment_number   integer NOT NULL,
    paid_on             date NOT NULL,
    amount              numeric(12, 2) NOT NULL CHECK (amount > 0),
    method              text NOT NULL CHECK (method IN ('direct_debit', 'bank_transfer', 'card', 'cash')),
    reference           text NOT NULL UNIQUE,
    FOREIGN KEY (account_id, instalment_number) REFERENCES repayment_schedule (account_id, instalment_number)
);
CREATE INDEX payments_account_paid_on_idx ON payments (account_id, paid_on);
COMMENT ON TABLE payments IS 'Money received, each payment against one instalment (partial payments allowed).';

CREATE TABLE delinquency_history (
    account_id          integer NOT NULL REFERENCES accounts (id),
    snapshot_on         date NOT NULL,
    days_past_due       integer NOT NULL CHECK (days_past_due >= 0),
    overdue_amount      numeric(12, 2) NOT NULL CHECK (overdue_amount >= 0),
    missed_instalments  integer NOT NULL CHECK (missed_instalments >= 0),
    bucket              text NOT NULL CHECK (bucket IN ('current', '1-29', '30-59', '60-89', '90+')),
    PRIMARY KEY (account_id, snapshot_on)
);
COMMENT ON TABLE delinquency_history IS
    'Days past due per account every 30 days back from the as-of date; derived from repayment_schedule and payments.';

CREATE TABLE collection_actions (
    id              integer PRIMARY KEY,
    account_id      integer NOT NULL REFERENCES accounts (id),
    action_type     text NOT NULL
                    CHECK (action_type IN ('reminder_sms', 'phone_call', 'letter', 'field_visit', 'payment_plan',
                                           'repossession_review')),
    action_on       date NOT NULL,
    outcome         text NOT NULL
                    CHECK (outcome IN ('no_answer', 'promise_to_pay', 'paid', 'disputed', 'scheduled', 'pending')),
    notes           text NOT NULL,
    next_action_on  date,
    created_by      text NOT NULL,
    CHECK (next_action_on IS NULL OR next_action_on >= action_on)
);
CREATE INDEX collection_actions_account_idx ON collection_actions (account_id, action_on);
COMMENT ON TABLE collection_actions IS 'What the collections team did about an account, and what comes next.';

-- ── raw data ────────────────────────────────────────────────────────────────────────────────

CREATE TABLE raw_telemetry (
    id                  bigint PRIMARY KEY,
    asset_id            integer NOT NULL REFERENCES assets (id),
    recorded_at         timestamptz NOT NULL,
    engine_hours_total  numeric(10, 1) NOT NULL CHECK (engine_hours_total >= 0),
    operating_hours     numeric(4, 1) NOT NULL CHECK (operating_hours BETWEEN 0 AND 24),
    fuel_level_pct      numeric(5, 1) NOT NULL CHECK (fuel_level_pct BETWEEN 0 AND 100),
    latitude            numeric(9, 6) NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    longitude           numeric(9, 6) NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    UNIQUE (asset_id, recorded_at)
);
-- The day v_asset_telemetry_dashboard.reading_date shows, which dashboards filter on: a week of two years'
-- readings is then a range of this index, not a scan of the table (`provision seed --scale`).
CREATE INDEX raw_telemetry_reading_date_idx ON raw_telemetry (((recorded_at AT TIME ZONE 'UTC')::date));
COMMENT ON TABLE raw_telemetry IS
    'End-of-day telematics reading per asset: hour meter, hours operated that day, fuel, position.';

-- ── metric system ───────────────────────────────────────────────────────────────────────────

CREATE TABLE metric_definitions (
    id                  integer PRIMARY KEY,
    code                text NOT NULL UNIQUE,
    name                text NOT NULL,
    unit                text NOT NULL,
    source              text NOT NULL CHECK (source IN ('telemetry', 'payments', 'location')),
    higher_is_better    boolean NOT NULL,
    description         text NOT NULL
);
COMMENT ON TABLE metric_definitions IS 'What we measure about an asset or account, with unit and direction.';

CREATE TABLE metric_values (
    id                      integer PRIMARY KEY,
    metric_definition_id    integer NOT NULL REFERENCES metric_definitions (id),
    asset_id                integer NOT NULL REFERENCES assets (id),
    period_start            date NOT NULL,
    period_end              date NOT NULL,
    value                   numeric(12, 2) NOT NULL,
    baseline_value          numeric(12, 2),
    context                 jsonb NOT NULL CHECK (jsonb_typeof(context) = 'object' AND context ? 'message'),
    UNIQUE (metric_definition_id, asset_id, period_start),
    CHECK (period_end >= period_start)
);
CREATE INDEX metric_values_asset_idx ON metric_values (asset_id, period_start);
COMMENT ON TABLE metric_values IS
    'Measured metric values per asset and period; context holds a human-readable message and the comparison made.';

CREATE TABLE metric_aggregates (
    asset_id                integer NOT NULL REFERENCES assets (id),
    metric_definition_id    integer NOT NULL REFERENCES metric_definitions (id),
    period                  text NOT NULL CHECK (period IN ('week')),
    period_start            date NOT NULL,
    sample_count            integer NOT NULL CHECK (sample_count > 0),
    value_sum               numeric(12, 2) NOT NULL,
    value_avg               numeric(12, 2) NOT NULL,
    value_min               numeric(12, 2) NOT NULL,
    value_max               numeric(12, 2) NOT NULL,
    PRIMARY KEY (asset_id, metric_definition_id, period, period_start)
);
COMMENT ON TABLE metric_aggregates IS 'Weekly roll-ups of telemetry metrics per asset; derived from raw_telemetry.';

-- ── indicators ──────────────────────────────────────────────────────────────────────────────

CREATE TABLE indicator_definitions (
    id                  integer PRIMARY KEY,
    code                text NOT NULL UNIQUE,
    name                text NOT NULL,
    description         text NOT NULL,
    watch_below         numeric(5, 1) NOT NULL CHECK (watch_below BETWEEN 0 AND 100),
    alert_below         numeric(5, 1) NOT NULL CHECK (alert_below BETWEEN 0 AND 100),
    CHECK (alert_below <= watch_below)
);
COMMENT ON TABLE indicator_definitions IS
    'Scores from 0 (bad) to 100 (good) combining metrics; below watch_below is an early sign, below alert_below an alert.';

CREATE TABLE indicator_values (
    id                      integer PRIMARY KEY,
    indicator_definition_id integer NOT NULL REFERENCES indicator_definitions (id),
    asset_id                integer NOT NULL REFERENCES assets (id),
    computed_on             date NOT NULL,
    score                   numeric(5, 1) NOT NULL CHECK (score BETWEEN 0 AND 100),
    previous_computed_on    date NOT NULL,
    previous_score          numeric(5, 1) NOT NULL CHECK (previous_score BETWEEN 0 AND 100),
    context                 jsonb NOT NULL CHECK (jsonb_typeof(context) = 'object' AND context ? 'message'),
    UNIQUE (indicator_definition_id, asset_id, computed_on),
    CHECK (previous_computed_on < computed_on)
);
CREATE INDEX indicator_values_asset_idx ON indicator_values (asset_id, computed_on);
COMMENT ON TABLE indicator_values IS
    'Latest indicator score per asset with the previous score it moved from; context explains the drivers.';

-- ── events ──────────────────────────────────────────────────────────────────────────────────

CREATE TABLE event_definitions (
    id                      integer PRIMARY KEY,
    code                    text NOT NULL UNIQUE,
    name                    text NOT NULL,
    category                text NOT NULL
                            CHECK (category IN ('payment', 'utilisation', 'location', 'maintenance', 'risk')),
    severity                text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    description             text NOT NULL,
    default_recommendation  text NOT NULL
);
COMMENT ON TABLE event_definitions IS 'Kinds of event the monitoring raises, with severity and a default recommendation.';

CREATE TABLE events (
    id                      integer PRIMARY KEY,
    event_definition_id     integer NOT NULL REFERENCES event_definitions (id),
    asset_id                integer NOT NULL,
    account_id              integer NOT NULL REFERENCES accounts (id),
    opened_at               timestamptz NOT NULL,
    status                  text NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
    resolved_at             timestamptz,
    context                 jsonb NOT NULL
                            CHECK (jsonb_typeof(context) = 'object' AND context ? 'message'
                                   AND context ? 'recommendation'),
    FOREIGN KEY (asset_id, account_id) REFERENCES assets (id, account_id),
    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL)),
    CHECK (resolved_at IS NULL OR resolved_at >= opened_at)
);
CREATE INDEX events_account_idx ON events (account_id);
CREATE INDEX events_asset_idx ON events (asset_id);
CREATE INDEX events_unresolved_idx ON events (opened_at) WHERE status <> 'resolved';
COMMENT ON TABLE events IS
    'Raised events; context carries the message, indicator from/to scores, the metric comparison and a recommendation.';

-- ── snapshots (derived) ─────────────────────────────────────────────────────────────────────

CREATE TABLE asset_current_state (
    asset_id                    integer PRIMARY KEY REFERENCES assets (id),
    as_of                       date NOT NULL,
    last_seen_at                timestamptz NOT NULL,
    latitude                    numeric(9, 6) NOT NULL,
    longitude                   numeric(9, 6) NOT NULL,
    engine_hours_total          numeric(10, 1) NOT NULL,
    operating_hours_7d          numeric(6, 1) NOT NULL,
    utilisation_7d_pct          numeric(5, 1) NOT NULL,
    utilisation_prior_7d_pct    numeric(5, 1) NOT NULL,
    latest_indicator_score      numeric(5, 1),
    open_events                 integer NOT NULL CHECK (open_events >= 0)
);
COMMENT ON TABLE asset_current_state IS
    'Per asset as of the as-of date: last position, utilisation (operating hours / 8 h shift) this week vs last; derived.';

CREATE TABLE account_current_state (
    account_id              integer PRIMARY KEY REFERENCES accounts (id),
    as_of                   date NOT NULL,
    balance_outstanding     numeric(12, 2) NOT NULL CHECK (balance_outstanding >= 0),
    principal_outstanding   numeric(12, 2) NOT NULL CHECK (principal_outstanding >= 0),
    total_paid              numeric(12, 2) NOT NULL CHECK (total_paid >= 0),
    days_past_due           integer NOT NULL CHECK (days_past_due >= 0),
    overdue_amount          numeric(12, 2) NOT NULL CHECK (overdue_amount >= 0),
    missed_instalments      integer NOT NULL CHECK (missed_instalments >= 0),
    last_payment_on         date,
    last_payment_amount     numeric(12, 2),
    next_due_on             date,
    next_due_amount         numeric(12, 2),
    risk_band               text NOT NULL CHECK (risk_band IN ('healthy', 'at_risk', 'delinquent')),
    open_events             integer NOT NULL CHECK (open_events >= 0)
);
COMMENT ON TABLE account_current_state IS
    'Per account as of the as-of date: balance, days past due, last payment, risk band; derived from the transactions.';
COMMENT ON COLUMN account_current_state.balance_outstanding IS
    'Instalments still to pay, finance charges included (the customer''s statement balance).';
COMMENT ON COLUMN account_current_state.principal_outstanding IS
    'Financed amount not yet repaid (the exposure): each payment repays principal in the ratio financed amount : total of instalments.';

CREATE TABLE customer_current_state (
    customer_id             integer PRIMARY KEY REFERENCES customers (id),
    as_of                   date NOT NULL,
    active_accounts         integer NOT NULL CHECK (active_accounts >= 0),
    total_exposure          numeric(12, 2) NOT NULL CHECK (total_exposure >= 0),
    total_overdue           numeric(12, 2) NOT NULL CHECK (total_overdue >= 0),
    worst_days_past_due     integer NOT NULL CHECK (worst_days_past_due >= 0),
    risk_band               text NOT NULL CHECK (risk_band IN ('healthy', 'at_risk', 'delinquent')),
    open_events             integer NOT NULL CHECK (open_events >= 0)
);
COMMENT ON TABLE customer_current_state IS
    'Per customer: exposure (principal outstanding) and the worst risk band over its accounts; derived from account_current_state.';

-- ── places ──────────────────────────────────────────────────────────────────────────────────

CREATE TABLE pois (
    id              integer PRIMARY KEY,
    name            text NOT NULL,
    poi_type        text NOT NULL CHECK (poi_type IN ('base', 'work_location', 'service_centre')),
    owner_type      text NOT NULL CHECK (owner_type IN ('asset', 'customer', 'oem')),
    asset_id        integer REFERENCES assets (id),
    customer_id     integer REFERENCES customers (id),
    oem_id          integer REFERENCES oems (id),
    latitude        numeric(9, 6) NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    longitude       numeric(9, 6) NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    radius_m        integer NOT NULL CHECK (radius_m > 0),
    address         text NOT NULL,
    -- exactly one owner, and it is the one owner_type names
    CHECK (num_nonnulls(asset_id, customer_id, oem_id) = 1),
    CHECK ((owner_type = 'asset') = (asset_id IS NOT NULL)),
    CHECK ((owner_type = 'customer') = (customer_id IS NOT NULL)),
    CHECK ((owner_type = 'oem') = (oem_id IS NOT NULL))
);
CREATE INDEX pois_asset_idx ON pois (asset_id);
CREATE INDEX pois_customer_idx ON pois (customer_id);
CREATE INDEX pois_oem_idx ON pois (oem_id);
COMMENT ON TABLE pois IS
    'Points of interest: asset bases, customer work locations, OEM service centres; owned by exactly one asset, customer or OEM.';

CREATE TABLE poi_visits (
    id              integer PRIMARY KEY,
    poi_id          integer NOT NULL REFERENCES pois (id),
    asset_id        integer NOT NULL REFERENCES assets (id),
    arrived_at      timestamptz NOT NULL,
    departed_at     timestamptz NOT NULL,
    CHECK (departed_at > arrived_at)
);
CREATE INDEX poi_visits_poi_idx ON poi_visits (poi_id, arrived_at);
CREATE INDEX poi_visits_asset_idx ON poi_visits (asset_id);
COMMENT ON TABLE poi_visits IS 'An asset inside a POI''s radius, from arrival to departure.';

CREATE TABLE poi_visit_patterns (
    poi_id              integer NOT NULL REFERENCES pois (id),
    asset_id            integer NOT NULL REFERENCES assets (id),
    visit_count         integer NOT NULL CHECK (visit_count > 0),
    first_visit_at      timestamptz NOT NULL,
    last_visit_at       timestamptz NOT NULL,
    avg_dwell_hours     numeric(6, 1) NOT NULL,
    visits_per_week     numeric(6, 1) NOT NULL,
    PRIMARY KEY (poi_id, asset_id)
);
COMMENT ON TABLE poi_visit_patterns IS 'How often and how long each asset visits each POI; derived from poi_visits.';
